"""Chunked inputs through ``convcli apply``: a Zarr input or a ``-o NAME.zarr`` output runs block
by block on Dask (:mod:`convcli.chunked`); a TIFF or ``.npy`` too big for the memory available is
refused before it is read, with the chunked command to use instead."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..chunked import is_zarr_path
from ..errors import ProcessError
from .jobs import Job
from .options import ChunkedOptions, FilterOptions
from .report import FilterReport, Stats

Progress = Callable[[int, int], None]
OUTPUT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}


def is_chunked(job: Job) -> bool:
    """Zarr in or Zarr out: the chunked path."""
    return job.fmt == "ZARR" or (job.input != "-" and is_zarr_path(job.input))


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (bytes), or None where there is no such file."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def in_memory_need(nbytes: int, itemsize: int) -> int:
    """What the in-memory path holds at its peak: the input, a float copy, the float result and
    the cast output (measured: 9x a uint16 volume's bytes; this estimate is 7x for uint16)."""
    cells = nbytes // itemsize
    return nbytes + 2 * 4 * cells + nbytes


def check_fits(job: Job, max_pixels: int) -> None:
    """Refuse a TIFF or ``.npy`` the in-memory path would need more memory for than is available.
    What the reader refuses from its header anyway (over ``--max-pixels``, corrupt) is left to it."""
    if job.input == "-" or Path(job.input).suffix.lower() not in (".tif", ".tiff", ".npy") or not Path(job.input).is_file():
        return
    free = available_memory()
    if free is None:
        return
    from ..chunked.source import open_source

    try:
        src = open_source(job.input)
    except Exception:  # the in-memory reader reports what is wrong with it, in its own words
        return
    cells = src.nbytes // src.dtype.itemsize
    if max_pixels and cells // src.channels > max_pixels:
        return  # the reader refuses it from its header, with the --max-pixels hint
    need = in_memory_need(src.nbytes, src.dtype.itemsize)
    if need > free:
        target = Path(job.input).with_suffix(".zarr").name
        raise ProcessError(
            f"filtering this {src.nbytes / 1e9:.1f} GB input in memory needs about {need / 1e9:.1f} GB and "
            f"{free / 1e9:.1f} GB are available; write Zarr instead, which runs block by block: -o {target}"
        )


def process_chunked(
    job: Job,
    opts: FilterOptions,
    copts: ChunkedOptions,
    *,
    overwrite: bool,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FilterReport:
    """Filter one input block by block into ``job.output`` (a ``.zarr``); the report as for files."""
    from ..chunked import require_extras

    require_extras()
    from ..chunked.run import filter_to_zarr
    from ..chunked.source import open_source
    from ..engine.api import FilterResult
    from ..engine.layout import accumulation_dtype
    from .process import _step_report, kernel_for

    if job.output is None or job.fmt != "ZARR":
        where = "stdout" if job.output is None else job.output.name
        raise ProcessError(f"a Zarr input is written as Zarr, not to {where} (give -o NAME.zarr or --format zarr)")
    if job.input == "-":
        raise ProcessError("the chunked path reads a .zarr, .tif or .npy file, not stdin")
    src = open_source(job.input, copts.component)
    if src.alpha and opts.alpha == "keep":
        raise ProcessError("the TIFF's last channel is alpha, which the chunked path cannot keep apart "
                           "(add --alpha filter to filter it with the colours, or write .tif)")  # fmt: skip
    dtype = src.dtype if opts.dtype == "keep" else np.dtype(OUTPUT_DTYPES[opts.dtype])
    t0 = time.perf_counter()
    steps = []
    current = src
    # several -k: each step but the last writes a float Zarr (the engine's accumulation type, as
    # the in-memory chain keeps floats between steps) in a hidden folder beside the output
    with tempfile.TemporaryDirectory(prefix=f".{job.output.name}.", suffix=".steps", dir=job.output.parent) as tmp:
        for i, k in enumerate(opts.kernels):
            last = i == len(opts.kernels) - 1
            if k.bank and (opts.origin is not None or opts.precision != "auto"):
                raise ProcessError(f"--origin and --precision apply to single kernels, not to the filter bank {k.name}")
            arr = kernel_for(k, opts.normalize)
            started = time.perf_counter()
            res = filter_to_zarr(
                current, arr, job.output if last else Path(tmp) / f"step{i + 1}.zarr", bias=k.bias, bank=k.bank,
                mode=opts.mode, border=opts.border, padding=opts.padding, stride=opts.stride,
                dilation=opts.dilation, cval=opts.cval, method=opts.method, origin=opts.origin,
                precision=opts.precision, dtype=dtype if last else accumulation_dtype(current.dtype, opts.precision),
                kernel_offset=k.offset, scale=opts.scale if last else 1.0, offset=opts.offset if last else 0.0,
                absolute=opts.absolute and last, chunks=copts.chunks, scheduler=copts.scheduler,
                workers=copts.workers, overwrite=overwrite and last, progress=progress,
                should_stop=should_stop, kernel_name=k.name, protect=(job.input,),
            )  # fmt: skip
            anchor = res.op.geometry.anchor(res.op.flip)
            result = FilterResult(np.empty(0), res.op.method, res.op.geometry, anchor)
            steps.append(_step_report(k, arr, result, current.channels * current.batch, time.perf_counter() - started, opts.mode))
            if not last:
                current = open_source(res.output, roles=res.grid.roles)
    seconds = time.perf_counter() - t0
    return FilterReport(
        input_shape=list(src.shape), axes=src.roles.replace("Y", "H").replace("X", "W"), dtype=str(src.dtype),
        mode=opts.mode, border=res.op.border, steps=tuple(steps), output_shape=list(res.grid.shape),
        output_dtype=str(res.dtype), seconds=seconds, stats=stats_from(res.stats), clipped=res.clipped, alpha=None,
        chunks=list(res.grid.chunks), scheduler=res.scheduler, workers=res.workers,
    )  # fmt: skip


def stats_from(doc: dict) -> Stats:
    """The report's Stats from a chunked run's reduced statistics."""
    per = doc.get("per_channel")
    return Stats(doc["min"], doc["max"], doc["mean"], doc["std"], tuple(stats_from(c) for c in per) if per else None)
