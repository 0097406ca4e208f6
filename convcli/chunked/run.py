"""One chunked filter run: open lazily, plan once, run every output block on Dask, write Zarr
atomically, reduce the blockwise statistics into the report."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import geometry
from ..engine.layout import accumulation_dtype
from ..errors import ArgumentError
from .block import Partial, Task, filter_block, plan_region, run_block
from .plan import Grid, Op, plan_grid, plan_op
from .schedule import Progress, parse_scheduler, run_tasks
from .source import Source, SourceSpec, chunk_reads, open_source, release_readers, select
from .store import OutputStore, ome_entry


@dataclass
class ChunkedResult:
    """What a chunked run did, for the CLI's report and JSON."""

    output: str
    source: Source
    op: Op
    grid: Grid
    dtype: np.dtype
    stats: dict[str, Any]
    clipped: int
    seconds: float
    scheduler: str
    workers: int

    def report(self) -> dict[str, Any]:
        """The per-file report's keys (as for in-memory files) plus ``chunks``, ``scheduler``, ``workers``."""
        op, geo = self.op, self.op.geometry
        spatial_k = op.kernel.shape[2:] if op.bank else op.kernel.shape
        batch = self.source.batch
        if op.bank:
            cout, cin = op.kernel.shape[:2]
            params = int(op.kernel.size) + (cout if op.bias is not None else 0)
            macs = geometry.conv_macs(cin, cout, spatial_k, geo.out_shape) * batch
        else:
            params = math.prod(spatial_k)
            macs = math.prod(geo.out_shape) * params * self.source.channels * batch
        names = {"X": "W_out", "Y": "H_out", "Z": "D_out"}
        roles = "".join(r for r in self.source.roles if r in "ZYX")
        return {
            "input": self.source.spec.path,
            "output": self.output,
            "status": "ok",
            "input_shape": list(self.source.shape),
            "axes": self.source.roles,
            "dtype": str(self.source.dtype),
            "kernel_shape": list(op.kernel.shape),
            "mode": "conv" if op.flip else "corr",
            "flipped": op.flip,
            "border": op.border,
            "padding": [list(p) for p in geo.padding],
            "stride": list(geo.stride),
            "dilation": list(geo.dilation),
            "formula": [geo.formula(i, names[r]) for i, r in enumerate(roles)],
            "output_shape": list(self.grid.shape),
            "output_dtype": str(self.dtype),
            "params": params,
            "macs": macs,
            "method": op.method,
            "seconds": self.seconds,
            "stats": self.stats,
            "clipped": self.clipped,
            "chunks": list(self.grid.chunks),
            "scheduler": self.scheduler,
            "workers": self.workers,
        }


def _stats(total: Partial, per_channel: bool) -> dict[str, Any]:
    """Reduced moments in the report's shape: overall, and per channel when there are channels."""

    def one(p: Partial, c: int) -> dict[str, Any]:
        if p.count[c] == 0:
            return {"min": math.nan, "max": math.nan, "mean": math.nan, "std": math.nan}
        return {"min": float(p.min[c]), "max": float(p.max[c]), "mean": float(p.mean[c]), "std": float(np.sqrt(p.m2[c] / p.count[c]))}

    p = total
    channels = [Partial(p.count[[c]], p.mean[[c]], p.m2[[c]], p.min[[c]], p.max[[c]], 0) for c in range(p.count.size)]
    overall: dict[str, Any] = one(functools.reduce(Partial.merge, channels), 0)
    if per_channel:
        overall["per_channel"] = [one(total, c) for c in range(total.count.size)]
    return overall


def filter_to_zarr(
    source: Source | str | Path,
    kernel: np.ndarray,
    output: str | Path,
    *,
    component: str = "",
    dtype: Any = "keep",
    kernel_offset: float = 0.0,
    scale: float = 1.0,
    offset: float = 0.0,
    absolute: bool = False,
    chunks: Sequence[int] | None = None,
    scheduler: str = "threads",
    workers: int = 0,
    overwrite: bool = False,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    kernel_name: str = "",
    protect: Sequence[str | Path] = (),
    **filter_args: Any,
) -> ChunkedResult:
    """Filter a lazily read input block by block into the Zarr store ``output``.

    ``filter_args`` are :func:`~convcli.chunked.plan.plan_op`'s: ``mode`` (corr/conv), ``border``,
    ``padding``, ``stride``, ``dilation``, ``cval``, ``method``, and ``bank``/``bias`` for a
    ``(Cout, Cin, *k)`` filter bank.

    Equals the in-memory engine on the same input (bit for bit with ``method="direct"``); the
    output dtype is the input's with ``dtype="keep"`` (integers rounded and clipped, as the CLI
    does), else ``dtype``. The result is ``(x + kernel_offset) * scale + offset``, then ``abs``
    (the CLI's order). ``should_stop`` is polled between blocks: when it turns true the run ends
    with :class:`~convcli.errors.Interrupted` and leaves no store. ``overwrite`` never replaces a
    folder holding the input or a path in ``protect`` (a chain's first input). Raises
    :class:`~convcli.chunked.ChunkedError` for inputs, outputs and schedulers the user must fix, :class:`~convcli.errors.ArgumentError` (a ``ValueError``) for bad
    filter arguments.
    """
    t0 = time.perf_counter()
    src = source if isinstance(source, Source) else open_source(source, component)
    sched = parse_scheduler(scheduler, workers)
    op = plan_op(src, kernel, **filter_args)
    grid = plan_grid(src, op, chunks)
    out_dtype = src.dtype if isinstance(dtype, str) and dtype == "keep" else np.dtype(dtype)
    if out_dtype.kind not in "iuf":
        msg = f"output dtype {out_dtype} is not numeric"
        raise ArgumentError(msg)
    attrs = {
        "convcli": {
            "kernel": kernel_name or f"{'x'.join(map(str, op.kernel.shape))} kernel",
            "kernel_shape": list(op.kernel.shape),
            "mode": "conv" if op.flip else "corr",
            "border": op.border,
            "cval": op.cval,
            "padding": [list(p) for p in op.geometry.padding],
            "stride": list(op.geometry.stride),
            "dilation": list(op.geometry.dilation),
            "method": op.method,
            "accumulation": str(accumulation_dtype(src.dtype, op.precision)),
            "input": src.spec.path + (f"/{src.spec.component}" if src.spec.component else ""),
        }
    }
    ome = None
    group_attrs: dict[str, Any] = {}
    if src.ome is not None:
        ome = {**ome_entry(src.ome, grid.roles, op.geometry), "version": src.ome["version"]}
        group_attrs = {k: v for k, v in src.attrs.items() if k not in ("multiscales", "ome", "omero")}
        if isinstance(src.attrs.get("ome"), dict):
            group_attrs["ome"] = {k: v for k, v in src.attrs["ome"].items() if k not in ("multiscales", "version", "omero")}
    with OutputStore(output, overwrite=overwrite, reads=(src.spec.path, *protect)) as store, contextlib.ExitStack() as done:
        done.callback(release_readers)
        target = store.create(grid.shape, grid.chunks, out_dtype, attrs, zarr_format=src.zarr_format or 3,
                              ome=ome, group_attrs=group_attrs)  # fmt: skip
        task = Task(src.spec, src.roles, src.shape, src.dtype, op, grid, target, out_dtype, kernel_offset, scale,
                    offset, absolute, sched.engine_threads, store.live)  # fmt: skip
        reads = chunk_reads(src, sched.kind == "threads")
        items = [(span,) if reads is None else _with_chunks(span, *reads.gather(plan_region(task, span).selection)) for span in grid.blocks()]
        partials, n_workers = run_tasks(run_block, task, items, sched, progress, should_stop)
        store.commit()
    total = functools.reduce(Partial.merge, partials)
    return ChunkedResult(
        str(store.target), src, op, grid, out_dtype, _stats(total, "C" in grid.roles), total.clipped,
        time.perf_counter() - t0, sched.name, n_workers,
    )  # fmt: skip


def _with_chunks(span: Any, gather: Any, chunks: list[Any]) -> tuple[Any, ...]:
    """A block's arguments: the chunk tasks go top level, where Dask passes their results."""
    return (span, gather, *chunks)


def filter_array(
    x: np.ndarray,
    roles: str,
    kernel: np.ndarray,
    *,
    dtype: np.dtype,
    kernel_offset: float = 0.0,
    scale: float = 1.0,
    offset: float = 0.0,
    absolute: bool = False,
    **filter_args: Any,
) -> tuple[np.ndarray, dict[str, Any], int, Op]:
    """An in-memory array filtered as one block in slabs along its first axis, so no float copy
    of the whole input exists (the in-memory path's peak for big 8/16-bit volumes). The same
    values as the whole-array engine; returns the cast result, its statistics, the clipped
    count and the plan."""
    src = Source(SourceSpec("memory", ""), x.shape, x.dtype, x.shape, roles)
    op = plan_op(src, kernel, **filter_args)
    whole = plan_grid(src, op)
    grid = dataclasses.replace(whole, chunks=whole.shape, block=whole.shape)  # one block, as large as the output (full padding grows it)
    task = Task(src.spec, roles, x.shape, x.dtype, op, grid, "", np.dtype(dtype), kernel_offset, scale, offset, absolute)
    span = next(iter(grid.blocks()))
    out, total = filter_block(task, span, select(x, plan_region(task, span).selection))
    return out, _stats(total, "C" in grid.roles), total.clipped, op
