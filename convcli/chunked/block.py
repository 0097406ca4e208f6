"""One output block: gather the padded input it needs, run the public engine API with
``padding="valid"``, post-process, cast, write into the output store, return partial statistics.

Runs on any Dask worker; everything it needs travels in a small picklable :class:`Task`.
"""

from __future__ import annotations

import functools
import itertools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.buffers import scratch
from ..engine.layout import accumulation_dtype
from ..engine.postprocess import IntMoments, cast, channel_stats, integer_moments, rescale
from .plan import Grid, Op, index_map, padded_span
from .source import Gather, SourceSpec, read
from .stored import ChunkFiles, chunk_files, write_whole

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
    kernel_offset: float = 0.0  # a libvips .mat offset: added to the engine's result first
    scale: float = 1.0
    offset: float = 0.0
    absolute: bool = False
    engine_threads: int = 0  # per Dask thread; 0: the worker's cores / its Dask threads
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

    def merge(self, other: Partial) -> Partial:
        """Chan et al.'s pairwise update: exact moments without a second pass over the data."""
        n = self.count + other.count
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = other.mean - self.mean
            mean = np.where(n > 0, self.mean + delta * np.nan_to_num(other.count / n), 0.0)
            m2 = self.m2 + other.m2 + np.nan_to_num(delta**2 * self.count * other.count / n)
        return Partial(n, mean, m2, np.minimum(self.min, other.min), np.maximum(self.max, other.max), self.clipped + other.clipped)


def _native_cval(dtype: np.dtype, cval: float) -> bool:
    """Whether ``cval`` is exactly a value of ``dtype`` (then constant cells need no float copy)."""
    if dtype.kind == "f":
        return True
    info = np.iinfo(dtype)
    return float(cval).is_integer() and info.min <= cval <= info.max


@dataclass(frozen=True)
class Region:
    """How one block's input is read and rearranged into the cells the engine's maps name."""

    selection: tuple[Any, ...]  # orthogonal read of the source: ints, slices, sorted int arrays
    gathers: dict[int, tuple[np.ndarray, bool]]  # data axis -> (local index, -1 for the constant; any constants)
    empty: bool  # the block reads padding only
    engine_pad: tuple[tuple[int, int], ...]  # per spatial axis: the padding left to the engine


def plan_region(task: Task, span: Span) -> Region:
    """The source cells one output block reads, cell for cell what the engine's index maps read.

    An axis after the first that the block spans whole is read whole, and the engine pads it
    itself with its own rule (no gathered copy). The first spatial axis is always gathered: the
    block is filtered in slabs along it.
    """
    op, geo = task.op, task.op.geometry
    selection: list[Any] = []
    gathers: dict[int, tuple[np.ndarray, bool]] = {}
    axis = spatial = 0
    empty = False
    engine_pad = [(0, 0)] * len(geo.padding)
    # a bank adds an output channel axis after the source axes: strict=False
    for role, n, (o0, o1) in zip(task.source_roles, task.source_shape, span, strict=False):
        if role in "BC":
            selection.append(o0 if role == "B" else slice(None))
            axis += role == "C"
            continue
        b, a = geo.padding[spatial]
        if spatial > 0 and o0 == 0 and o1 == geo.out_shape[spatial]:
            selection.append(slice(None))
            engine_pad[spatial] = (b, a)
            spatial += 1
            axis += 1
            continue
        k, s, d = geo.kernel_shape[spatial], geo.stride[spatial], geo.dilation[spatial]
        seg = index_map(n, b, a, op.border)[slice(*padded_span(o0, o1, k, s, d))]
        spatial += 1
        const = seg < 0
        uniq = np.unique(seg[~const])
        if uniq.size == 0:
            empty = True
            uniq = np.zeros(1, dtype=np.int64)
        contiguous = int(uniq[-1] - uniq[0]) + 1 == uniq.size
        selection.append(slice(int(uniq[0]), int(uniq[-1]) + 1) if contiguous else uniq)
        if not np.array_equal(seg, uniq):  # borders, repeats or a wrap inside the region
            gathers[axis] = (np.where(const, uniq.size, np.searchsorted(uniq, seg)), bool(const.any()))
        axis += 1
    selection.extend(slice(None) for _ in range(len(task.source_roles) - len(selection)))
    return Region(tuple(selection), gathers, empty, tuple(engine_pad))


def _assemble(task: Task, region: Region, data: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply the gathers to the data read, except along the first axis: its local index is
    returned and applied slab by slab (that copy is made per slab anyway)."""
    if region.empty:
        data = np.zeros_like(data)  # only constant cells are read below
    if any(c for _, c in region.gathers.values()):
        # one padding cell holds the constant; in the float type unless the input type holds it
        # exactly (the engine's own conversion is a plain cast, so both are exact)
        native = _native_cval(data.dtype, task.op.cval)
        dtype = data.dtype if native else accumulation_dtype(task.source_dtype, task.op.precision)
        widths = [(0, 1) if region.gathers.get(ax, (None, False))[1] else (0, 0) for ax in range(data.ndim)]
        data = np.pad(data.astype(dtype, copy=False), widths, constant_values=dtype.type(task.op.cval))
    for ax, (local, _) in region.gathers.items():
        if ax > 0:
            data = np.take(data, local, axis=ax)
    first = region.gathers.get(0)
    return data, None if first is None else first[0]


def _engine(task: Task, region: np.ndarray, padding: tuple[tuple[int, int], ...], out: np.ndarray | None = None) -> np.ndarray:
    """The public engine API on one region: valid padding except on axes read whole, on the
    backend chosen for the whole array."""
    import convcli

    from ..engine.tasks import backend

    op, geo = task.op, task.op.geometry
    kw: dict[str, Any] = {"padding": padding, "stride": geo.stride, "dilation": geo.dilation, "border": op.border, "cval": op.cval}
    with backend("numba" if op.compiled else "numpy"):
        if op.bank:
            return convcli.conv_layer(region, op.kernel, op.bias, mode="conv" if op.flip else "corr", **kw)
        run = convcli.convolve if op.flip else convcli.correlate
        return run(region, op.kernel, method=op.method, precision=op.precision, out=out, **kw)  # type: ignore[arg-type]


SLAB_CELLS = 1 << 21  # output cells per engine call: float temporaries of a few MB per worker


def filter_block(task: Task, span: Span, data: np.ndarray | None = None, *, reuse: bool = False) -> tuple[np.ndarray, Partial]:
    """One output block, cast to the output type, and its partial statistics. ``data`` is the
    block's :func:`plan_region` selection, already read (else it is read here). With ``reuse``,
    the block and the engine's float slabs live in this thread's reused buffers
    (:func:`~convcli.engine.buffers.scratch`): the returned block is valid until its next block.

    The region is read once in the input's type; the engine runs on slabs of it along the first
    spatial axis, so the float copies stay small whatever the block size.
    """
    op, geo = task.op, task.op.geometry
    plan = plan_region(task, span)
    if data is None:
        data = read(task.source, plan.selection)
    region, first = _assemble(task, plan, data)
    if op.bank and "C" not in task.source_roles:
        region = region[..., None]
    out_span = [hi - lo for r, (lo, hi) in zip(task.grid.roles, span, strict=True) if r != "B"]
    out = scratch("block", out_span, task.out_dtype) if reuse else np.empty(out_span, dtype=task.out_dtype)
    acc = accumulation_dtype(task.source_dtype, op.precision)
    channels = out.shape[-1] if "C" in task.grid.roles else 1
    k0, s0, d0 = geo.kernel_shape[0], geo.stride[0], geo.dilation[0]
    plane = max(1, out.size // out.shape[0])
    # separable slabs at least four halos deep: the first pass filters each slab's halo planes
    # again (two halos cost 1.8x the in-memory time for a 17^3 Gaussian, measured)
    rows = max(-(-SLAB_CELLS // plane), 4 * d0 * (k0 - 1) if op.method == "separable" else 1)
    total: Partial | None = None
    for q0 in range(0, out.shape[0], rows):
        q1 = min(out.shape[0], q0 + rows)
        rows_read = slice(*padded_span(q0, q1, k0, s0, d0))
        part_in = region[rows_read] if first is None else np.take(region, first[rows_read], axis=0)
        slab = scratch("slab", out[q0:q1].shape, acc) if reuse and not op.bank else None
        x = _engine(task, part_in, plan.engine_pad, slab)
        if task.kernel_offset:
            x += x.dtype.type(task.kernel_offset)
        rescale(x, task.scale, task.offset, task.absolute)
        done, clipped = cast(x, task.out_dtype, out=out[q0:q1])  # (a slice along the first axis: contiguous)
        if done.dtype.kind in "iu" and done.dtype.itemsize <= 2:
            part = _int_partial(integer_moments(done.reshape(-1, channels)), clipped)
        else:
            st = channel_stats(done, channels)
            part = Partial(st.count, np.nan_to_num(st.mean), np.nan_to_num(st.std**2 * st.count), st.min, st.max, clipped)
        total = part if total is None else total.merge(part)
    assert total is not None
    return out, total


def _int_partial(m: IntMoments, clipped: int) -> Partial:
    """A block's :class:`Partial` from the exact integer moments of its 8/16-bit values."""
    c, seen = len(m.sums), m.count > 0
    lo = np.array(m.mins, dtype=np.float64) if seen else np.full(c, np.inf)
    hi = np.array(m.maxs, dtype=np.float64) if seen else np.full(c, -np.inf)
    return Partial(np.full(c, float(m.count)), np.array(m.sums) / max(1, m.count), m.m2(), lo, hi, clipped)


@functools.lru_cache(maxsize=16)
def _target(path: str) -> Any:
    """The output array, opened once per process. Zarr 3 compares every written chunk with the
    fill value to skip empty ones (a third of a 3x3x3 run's write time, measured); filtered
    blocks are rarely all zero, so every chunk is written (Zarr 2's default too)."""
    import zarr

    arr: Any = zarr.open_array(store=path, mode="r+")
    # (open_array's own config= is ignored by zarr 3.1; with_config is not in zarr 2, which writes them anyway)
    return arr.with_config({"write_empty_chunks": True}) if hasattr(arr, "with_config") else arr


def _threads(wanted: int) -> int:
    """Engine threads for this Dask thread: Dask threads x engine threads <= cores."""
    from ..engine.tasks import cores

    if wanted > 0:
        return wanted
    try:
        from distributed import get_worker

        return max(1, cores() // get_worker().state.nthreads)
    except (ImportError, ValueError):  # not on a distributed worker
        return cores()


def run_block(task: Task, span: Span, gather: Gather | None = None, *chunks: np.ndarray) -> Partial | None:
    """Filter, post-process, cast and write one block; ``None`` when the run was cancelled.
    With ``gather``, the block's input is assembled from the decoded ``chunks``."""
    from ..engine.tasks import using_threads
    from .schedule import threadsafe_layer

    threadsafe_layer()  # before this process's first parallel kernel (a no-op after it)
    if task.live and not os.path.exists(task.live):
        return None
    data = None if gather is None else gather.assemble(chunks, scratch("input", gather.shape, chunks[0].dtype))
    with using_threads(_threads(task.engine_threads)):
        out, partial = filter_block(task, span, data, reuse=True)
    if task.live and not os.path.exists(task.live):
        return None
    _write(task.target, task.grid, span, out)
    return partial


@functools.lru_cache(maxsize=16)
def _target_files(path: str) -> ChunkFiles | None:
    return chunk_files(_target(path))


def _write(path: str, grid: Grid, span: Span, out: np.ndarray) -> None:
    """Each stored chunk of the block written as its own file (see ``stored``), or, for a store
    or codec that module leaves to Zarr, by one assignment per chunk of a contiguous array: zarr
    3 encodes such a write as it is, but copies every chunk of a larger write into a new
    fill-valued buffer first (a quarter more CPU per block of four chunks, measured)."""
    files = _target_files(path)
    full = np.expand_dims(out, tuple(i for i, r in enumerate(grid.roles) if r == "B"))  # B: one index per block
    ranges = [[(s, min(s + c, o1)) for s in range(o0, o1, c)] for (o0, o1), c in zip(span, grid.chunks, strict=True)]
    for box in itertools.product(*ranges):
        local = tuple(slice(a - o0, b - o0) for (a, b), (o0, _) in zip(box, span, strict=True))
        piece = full[local]
        where = tuple(slice(a, b) for a, b in box)
        if files is not None and write_whole(files, where, piece):
            continue
        if not piece.flags.c_contiguous:
            piece = scratch("chunk", piece.shape, piece.dtype)
            piece[...] = full[local]
        _target(path)[where] = piece
