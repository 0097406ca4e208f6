"""One output block: gather the padded input it needs, run the public engine API with
``padding="valid"``, post-process, cast, write into the output store, return partial statistics.

Runs on any Dask worker; everything it needs travels in a small picklable :class:`Task`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .plan import Grid, Op, index_map, padded_span
from .source import SourceSpec, read

Span = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Task:
    """What every block of one run shares."""

    source: SourceSpec
    source_roles: str
    source_shape: tuple[int, ...]
    source_dtype: np.dtype
    op: Op
    grid: Grid
    target: str  # the output array's folder
    out_dtype: np.dtype
    scale: float = 1.0
    offset: float = 0.0
    absolute: bool = False
    numba_threads: int = 0  # 0: the worker's cores / its Dask threads
    live: str = ""  # a file that exists while the run may still write (removed on cancel)


@dataclass
class Partial:
    """Per-channel moments of one block's written values (finite values only) and its clip count."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray  # sum of squared deviations from ``mean``
    min: np.ndarray
    max: np.ndarray
    clipped: int

    @classmethod
    def of(cls, out: np.ndarray, channels: int, clipped: int) -> Partial:
        flat = out.reshape(-1, channels).astype(np.float64)
        finite = np.isfinite(flat)
        count = finite.sum(axis=0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(finite, flat, 0.0).sum(axis=0) / count
            m2 = (np.where(finite, flat - mean, 0.0) ** 2).sum(axis=0)
        return cls(
            count, np.nan_to_num(mean), m2, np.where(finite, flat, np.inf).min(axis=0),
            np.where(finite, flat, -np.inf).max(axis=0), clipped,
        )  # fmt: skip

    def merge(self, other: Partial) -> Partial:
        """Chan et al.'s pairwise update: exact moments without a second pass over the data."""
        n = self.count + other.count
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = other.mean - self.mean
            mean = np.where(n > 0, self.mean + delta * np.nan_to_num(other.count / n), 0.0)
            m2 = self.m2 + other.m2 + np.nan_to_num(delta**2 * self.count * other.count / n)
        return Partial(n, mean, m2, np.minimum(self.min, other.min), np.maximum(self.max, other.max), self.clipped + other.clipped)


def accumulation_dtype(dtype: np.dtype) -> np.dtype:
    """The engine's rule: float64 input accumulates in float64, everything else in float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _gather(task: Task, span: Span) -> np.ndarray:
    """The padded input region of one output block, in the engine's index maps' exact cells."""
    op, geo = task.op, task.op.geometry
    selection: list[Any] = []
    gathers: list[tuple[int, np.ndarray, np.ndarray]] = []  # (axis in data, local index, constant mask)
    axis = 0
    spatial = 0
    empty = False
    # a bank adds an output channel axis after the source axes: strict=False
    for role, n, (o0, o1) in zip(task.source_roles, task.source_shape, span, strict=False):
        if role == "B":
            selection.append(o0)
            continue
        if role == "C":
            selection.append(slice(None))
            axis += 1
            continue
        b, a = geo.padding[spatial]
        k, s, d = geo.kernel_shape[spatial], geo.stride[spatial], geo.dilation[spatial]
        p0, p1 = padded_span(o0, o1, k, s, d)
        seg = index_map(n, b, a, op.border)[p0:p1]
        spatial += 1
        const = seg < 0
        uniq = np.unique(seg[~const])
        if uniq.size == 0:  # the whole block reads padding
            empty = True
            uniq = np.zeros(1, dtype=np.int64)
        contiguous = int(uniq[-1] - uniq[0]) + 1 == uniq.size
        selection.append(slice(int(uniq[0]), int(uniq[-1]) + 1) if contiguous else uniq)
        if not np.array_equal(seg, uniq):  # borders, repeats or a wrap inside the region
            local = np.searchsorted(uniq, seg)
            gathers.append((axis, np.where(const, uniq.size, local), const))
        axis += 1
    data = read(task.source, tuple(selection))
    acc = accumulation_dtype(task.source_dtype)
    if empty:
        data = np.zeros_like(data, dtype=acc)  # only constant cells are read below
    if any(const.any() for _, _, const in gathers) or empty:
        # the constant needs the float type (cval may be fractional or negative); exact for the
        # engine's own conversion, which is a plain cast too
        widths = [(0, 0)] * data.ndim
        for ax, _, const in gathers:
            widths[ax] = (0, 1) if const.any() else (0, 0)
        data = np.pad(data.astype(acc, copy=False), widths, constant_values=acc.type(op.cval))
    for ax, local, _ in gathers:
        data = np.take(data, local, axis=ax)
    return data


def filter_block(task: Task, span: Span) -> np.ndarray:
    """The engine's float result for one output block (channels last when the output has them)."""
    import convcli

    op, geo = task.op, task.op.geometry
    region = _gather(task, span)
    if op.bank and "C" not in task.source_roles:
        region = region[..., None]
    kw: dict[str, Any] = {"padding": "valid", "stride": geo.stride, "dilation": geo.dilation}
    if op.bank:
        return convcli.conv_layer(region, op.kernel, op.bias, mode="conv" if op.flip else "corr", **kw)
    run = convcli.convolve if op.flip else convcli.correlate
    return run(region, op.kernel, method=op.method, **kw)  # type: ignore[arg-type]


def cast(x: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, int]:
    """The CLI's cast: floats pass through; integers are rint, clipped (NaN -> 0) and counted."""
    if dtype.kind == "f":
        return x.astype(dtype, copy=False), 0
    info = np.iinfo(dtype)
    r = np.rint(x)
    bad = ~((r >= info.min) & (r <= info.max))  # out of range, or NaN
    clipped = int(np.count_nonzero(bad))
    np.clip(r, info.min, info.max, out=r)
    r[np.isnan(r)] = 0
    return r.astype(dtype), clipped


@functools.lru_cache(maxsize=16)
def _target(path: str) -> Any:
    import zarr

    return zarr.open_array(store=path, mode="r+")


def _set_threads(wanted: int) -> None:
    import numba

    if wanted <= 0:
        try:
            from distributed import get_worker

            wanted = max(1, (os.cpu_count() or 1) // get_worker().state.nthreads)
        except (ImportError, ValueError):
            wanted = numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))  # thread-local


def run_block(task: Task, span: Span) -> Partial | None:
    """Filter, post-process, cast and write one block; ``None`` when the run was cancelled."""
    _set_threads(task.numba_threads)
    if task.live and not os.path.exists(task.live):
        return None
    x = filter_block(task, span)
    if task.scale != 1.0:
        x *= x.dtype.type(task.scale)
    if task.offset:
        x += x.dtype.type(task.offset)
    if task.absolute:
        np.abs(x, out=x)
    out, clipped = cast(x, task.out_dtype)
    channels = out.shape[-1] if "C" in task.grid.roles else 1
    partial = Partial.of(out, channels, clipped)
    if task.live and not os.path.exists(task.live):
        return None
    where = tuple(o0 if r == "B" else slice(o0, o1) for r, (o0, o1) in zip(task.grid.roles, span, strict=True))
    _target(task.target)[where] = out
    return partial
