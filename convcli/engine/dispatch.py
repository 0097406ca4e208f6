"""Run a :class:`~convcli.engine.plan.Plan`: lay the input out, call the private kernels, restore
the caller's layout. No validation here; the plan has decided everything."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import geometry
from . import _small, buffers, tasks, tuning
from ._borders import index_map
from .layout import as_float, depthwise, interleave_map, interleaved_input, planar_input, restore
from .plan import Plan
from .postprocess import Cast


@dataclass(frozen=True)
class Band:
    """One band of output rows: the y index map into the band's own source rows, and the slice
    of the whole output the band fills."""

    ymap: np.ndarray
    out: np.ndarray


def execute(plan: Plan, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The filtered array in the caller's layout: ``plan.out_shape``, dtype ``plan.acc``; or the
    caller's checked ``out`` (of that shape and a float dtype), filled and returned.

    The kernels write straight into ``out`` when they can (``out`` in the accumulation dtype,
    C-contiguous, not overlapping the input, a layout the kernels share with the caller, not the
    FFT); otherwise the result is computed aside and copied in.
    """
    if not plan.compiled:
        return _execute_numpy(plan, a, out)
    planar = plan.has_channels and not plan.interleaved and plan.channels > 1  # (C, ...) inside, (..., C) outside
    target = None
    if out is not None and not planar and out.dtype == plan.acc and out.flags.c_contiguous and not np.may_share_memory(out, a):
        Zo, Ho, Wo = plan.geo3.out_shape
        target = out.reshape((1 if plan.interleaved else plan.channels, Zo, Ho, Wo * (plan.channels if plan.interleaved else 1)))
    if plan.banded:
        res = _banded(plan, a, target)
    else:
        xc, groups, interleave = _canonical_input(plan, a)
        res = run_canonical(xc, plan, groups=groups, interleave=interleave, out=target)
    if out is None:
        return restore(res, plan.geometry.out_shape, plan.has_channels) if planar else res.reshape(plan.out_shape)
    if target is None:
        spatial = plan.geometry.out_shape
        np.copyto(out, np.moveaxis(res.reshape((plan.channels, *spatial)), 0, -1) if planar else res.reshape(out.shape))
    return out


def execute_cast(plan: Plan, a: np.ndarray, cast: Cast) -> tuple[np.ndarray, int] | None:
    """The plan's result through ``cast`` (``plan.out_shape``, ``cast.dtype``) and its clipped
    count, made inside the direct kernel without a float result; None when the plan cannot
    (another method, a planar channel layout, another target): then filter and cast apart.

    Each direct kernel's copies (``_direct.bank``, ``_direct.unrolled``) are compiled once per
    integer output type, so they take the targets ``convcli apply`` writes most, which ``convcli warmup``
    compiles (``Cast.fuses``): 8-bit (whatever the input: the same signature as a float result)
    and 16-bit unsigned from 16-bit unsigned input (16-bit PNG/TIFF)."""
    if not (cast.fuses(a.dtype) and plan.compiled and plan.method == "direct" and not plan.banded and (plan.interleaved or plan.channels == 1)):
        return None
    xc, groups, interleave = _canonical_input(plan, a)
    job = _planned_job(plan, xc, groups, interleave)
    iout = buffers.empty(job.out_shape, cast.dtype)
    info = np.iinfo(cast.dtype)
    post = np.array([cast.pre, cast.scale, cast.offset, info.min, info.max, cast.absolute], dtype=plan.acc)
    clipped = _run_job(job, xc, job.no_out, iout, post, ready=True)
    return iout.reshape(plan.out_shape), clipped


def _canonical_input(plan: Plan, a: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The kernels' (C, Z, H, W) input, its groups and its interleave: channels-last data as one
    interleaved channel when the plan says so, else one planar channel per group."""
    raw = plan.method == "direct"  # the direct kernel converts 8/16-bit rows itself
    if plan.interleaved:
        return interleaved_input(a, plan.acc, raw), 1, plan.channels
    return planar_input(a, plan.has_channels, plan.acc, raw), plan.channels, 1


def _execute_numpy(plan: Plan, a: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """A small plan in plain numpy (see ``_small``), channels-last throughout."""
    x = np.asarray(a if plan.has_channels else a[..., None], dtype=plan.acc)
    xp = _small.pad(x, plan.geometry, plan.border, plan.cval)
    if plan.method == "separable":
        assert plan.terms is not None
        res = _small.separable(xp, plan.terms, plan.geometry)
    else:
        form = plan.derived.get("flat", _UNKNOWN)  # (the plan fixes the padded shape)
        if form is _UNKNOWN:
            form = plan.derived["flat"] = _small.flat_form(xp.shape, xp.dtype, plan.kernel3.reshape(plan.geometry.kernel_shape), plan.geometry)
        if form is None:
            res = _small.direct(xp, plan.kernel3.reshape(plan.geometry.kernel_shape), plan.geometry)
        else:
            res = _small.run_flat(xp, form)
    res = res.reshape(plan.out_shape)
    if out is None:
        return res
    np.copyto(out, res)
    return out


def run_canonical(
    xc: np.ndarray, plan: Plan, *, groups: int, interleave: int, band: Band | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """The plan's method on a canonical (C, Z, H, W) array, or on one band of it; returns the
    output: ``band.out`` when a band is given, else ``out`` when given, else a new array."""
    if plan.method == "direct":
        if band is not None:
            w5 = depthwise(plan.kernel3, groups, plan.acc)
            return direct3(xc, w5, plan.geo3, plan.border, plan.cval, groups=groups, interleave=interleave, band=band)
        job = _planned_job(plan, xc, groups, interleave)
        res = buffers.empty(job.out_shape, plan.acc) if out is None else out
        _run_job(job, xc, res, None, None, ready=True)
        return res
    if plan.method == "fft":
        if band is not None:
            msg = "internal: the FFT path has no banded form (the plan must not band it)"
            raise RuntimeError(msg)
        from ._fft import fft_correlate

        res = fft_correlate(xc, plan.kernel3, plan.geo3, plan.border, plan.cval)
        if out is not None:
            out[...] = res
            res = out
        return res
    # The separable path works on a zero border; a constant cval is added back as cval*sum(k),
    # exact for a linear filter.
    shift = plan.cval if plan.border == "constant" and plan.cval != 0.0 else 0.0
    if shift:
        xc = xc - xc.dtype.type(shift)
    assert plan.terms is not None
    first, *rest = plan.terms
    res = separable3(xc, first, plan.geo3, plan.border, plan.acc, interleave=interleave, band=band, out=out)
    if rest:  # a low-rank kernel: one fused pass per rank-1 term, summed
        scratch = buffers.empty(res.shape, res.dtype)
        part = Band(band.ymap, scratch) if band is not None else None
        for term in rest:
            res += separable3(xc, term, plan.geo3, plan.border, plan.acc, interleave=interleave, band=part, out=scratch)
    if shift:
        res += res.dtype.type(shift * float(plan.kernel3.sum()))
    return res


def direct3(
    xc: np.ndarray,
    w5: np.ndarray,
    geo3: geometry.Geometry,
    border: str,
    cval: float,
    *,
    groups: int,
    interleave: int = 1,
    band: Band | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The direct kernel on canonical arrays; ``geo3`` is lifted to three axes. Writes into
    ``band.out``, else into ``out``, else into a new array, and returns it.

    With ``interleave=C``, ``xc`` is (1, Z, H, W*C) channels-last data and the x axis is walked
    per channel (requires x-stride 1).
    """
    if band is not None:
        out = band.out
    elif out is None:
        Zo, Ho, Wo = geo3.out_shape
        out = buffers.empty((w5.shape[0], Zo, Ho, Wo * interleave), w5.dtype)
    _run_direct(xc, w5, geo3, border, cval, groups, interleave, band, out, None, None)
    return out


@dataclass(frozen=True, eq=False, slots=True)
class DirectJob:
    """A direct kernel call, all but its arrays of the moment: ``kernel(xc, *middle, out, iout,
    post, counts, block_rows)`` over ``ntasks`` tasks. A plan keeps its jobs (:func:`_planned_job`),
    so a repeated small call skips the index maps, blocks and weights."""

    kernel: Any  # a copy of correlate_unrolled or correlate_bank (tasks.run takes its serial twin for small work)
    ntasks: int
    middle: tuple[Any, ...]
    macs: int
    convert: np.dtype | None  # the input converted to this first (rows read in place, an unheld constant border)
    block_rows: int
    threads: int  # the blocks were sized for this many threads (1: serial work)
    out_shape: tuple[int, ...]  # (Cout, Zo, Ho, Wo*interleave)
    no_post: np.ndarray  # ``post`` for a float result (none)
    no_out: np.ndarray  # ``out`` for an integer result (none)


def _run_direct(
    xc: np.ndarray, w5: np.ndarray, geo3: geometry.Geometry, border: str, cval: float, groups: int, interleave: int,
    band: Band | None, out: np.ndarray, iout: np.ndarray | None, post: np.ndarray | None,
) -> int:
    """Call the direct kernel (into ``out``, or through ``post`` into the integer ``iout``);
    returns the clipped count (0 without ``iout``)."""
    target = out if iout is None else iout
    job = direct_job(xc.shape, xc.dtype, w5, geo3, border, cval, groups, interleave, None if band is None else band.ymap, target.shape)
    return _run_job(job, xc, out, iout, post)


def _run_job(
    job: DirectJob, xc: np.ndarray, out: np.ndarray, iout: np.ndarray | None, post: np.ndarray | None, *, ready: bool = False
) -> int:
    """Run ``job`` on these arrays; returns the clipped count (0 without ``iout``). ``ready``: the
    arrays are C-contiguous and writable (as _canonical_input, buffers and check_out make them),
    so their dtypes tell the kernel's argument types (tasks.run need not read every argument)."""
    if job.convert is not None:
        xc = xc.astype(job.convert)
    counts = np.zeros(job.ntasks if iout is not None else 1, dtype=np.int64)  # clipped values per task
    tasks.run(
        job.kernel, job.ntasks, xc, *job.middle, out, NO_INTEGERS if iout is None else iout, job.no_post if post is None else post,
        counts, job.block_rows, work=job.macs, ready=(xc.dtype.char, job.no_post.dtype.char, iout is None or iout.dtype.char) if ready else None,
    )  # fmt: skip
    return int(counts.sum()) if iout is not None else 0


_UNKNOWN = object()


def _planned_job(plan: Plan, xc: np.ndarray, groups: int, interleave: int) -> DirectJob:
    """The direct job of ``plan`` on the canonical ``xc``, kept with the plan (the same object for a
    repeated call, see plan.plan_key) by the input's layout; rebuilt when work that runs in
    parallel meets another thread count."""
    key = (xc.shape, xc.dtype, groups, interleave)
    job = plan.derived.get(key)
    if job is None or not tuning.serial(job.macs) and job.threads != tasks.threads():
        Zo, Ho, Wo = plan.geo3.out_shape
        w5 = depthwise(plan.kernel3, groups, plan.acc)
        job = direct_job(xc.shape, xc.dtype, w5, plan.geo3, plan.border, plan.cval, groups, interleave, None, (groups, Zo, Ho, Wo * interleave))
        plan.derived[key] = job
    return job


def direct_job(
    xshape: tuple[int, ...], xdtype: np.dtype, w5: np.ndarray, geo3: geometry.Geometry, border: str, cval: float, groups: int,
    interleave: int, ymap: np.ndarray | None, target_shape: tuple[int, ...],
) -> DirectJob:
    """The direct kernel's call for an input of ``xshape`` and ``xdtype`` into a result of
    ``target_shape`` (``ymap``: a band's own y index map)."""
    from ._direct import FOURS, bank, reads_in_place, unrolled
    from ._jit import vector_registers

    _, Z, H, WC = xshape
    W = WC // interleave
    maps = [index_map(n, b, a, border) for n, (b, a) in zip((Z, H, W), geo3.padding)]
    if ymap is not None:
        maps[1] = ymap
    sz, sy, sx = geo3.stride
    dz, dy, dx = geo3.dilation
    Cout, Zo, Ho, WoC = target_shape
    acc = w5.dtype
    macs = math.prod(target_shape) * w5[0].size
    n = 1 if tuning.serial(macs) else tasks.threads()
    rows, no_post, no_out = tuning.block_rows(vector_registers()), np.zeros(6, acc), np.zeros((0, 0, 0, 0), acc)
    if _unrolled(w5, geo3, interleave):  # a whole 3x3/5x5: no strips (see correlate_unrolled)
        convert = None
        if not _holds(xdtype, border, cval) and (xdtype == np.uint8 or reads_in_place(xdtype.name, acc.name)):
            # rows read in place take the constant border in their own type: converted first; 8-bit
            # rows always, as whether they are read in place is the CPU's choice, made when the
            # (possibly cached) kernel compiled
            convert = acc
        xmap = interleave_map(maps[2], interleave) if interleave > 1 else maps[2]
        block = tuning.unrolled_block(Cout * Zo, Ho, n=n)
        ntasks = Cout * Zo * -(-Ho // block)
        in_place = acc if convert is not None else xdtype if reads_in_place(xdtype.name, acc.name) else None
        quads = _quads(w5.shape[3], rows, WC, in_place, acc)
        middle: tuple[Any, ...] = (
            w5, maps[0], maps[1], xmap, geo3.padding[2][0] * interleave, acc.type(cval if border == "constant" else 0.0), sz,
            groups, block, quads,
        )  # fmt: skip
        return DirectJob(unrolled(quads >= 0, w5.shape[3], interleave), ntasks, middle, macs, convert, rows, n, target_shape, no_post, no_out)
    # interleaved channels at unit strides and dilations, on rows wide enough for the paired blocks:
    # the strips hold each channel apart (planar), so the blocks run at unit spacing
    planar = interleave > 1 and sy == sx == dy == dx == 1 and WoC // interleave >= tuning.FLAT_MAX_WIDTH
    padded = maps[2].shape[0] * interleave
    bx = geo3.padding[2][0]
    if planar:
        xdx = 1
    else:
        if interleave > 1:
            maps[2] = interleave_map(maps[2], interleave)
        bx, xdx = bx * interleave, dx * interleave
    ring = (w5.shape[2] - 1) * dz + 1
    mode = bank_mode(w5.shape, planar, sx, sy, xdx, dy, WoC, rows)
    block, zrun = tuning.direct_tasks(Zo, Ho, padded, acc.itemsize, ring, w5.shape[3], dy, sy, channels=Cout, n=n, kd=w5.shape[2], fours=mode in FOURS)
    ntasks = Cout * -(-Zo // zrun) * -(-Ho // block)
    middle = (
        w5, maps[0], maps[1], maps[2], bx, acc.type(cval), sz, sy, sx, dz, dy, xdx, groups, block, zrun, interleave if planar else 0,
    )  # fmt: skip
    return DirectJob(bank(mode), ntasks, middle, macs, None, rows, n, target_shape, no_post, no_out)


def bank_mode(wshape: tuple[int, ...], planar: bool, sx: int, sy: int, dx: int, dy: int, width: int, block_rows: int) -> int:
    """``correlate_bank``'s path (``_direct.MODE``) for a kernel of ``wshape`` (Cout, Cg, KD, KH, KW)
    over rows of ``width`` cells (interleaved ones counted apart) at these strides and dilations
    (``dx`` in cells of the strip row: a channel's own on ``planar`` strips), with tap blocks of
    ``block_rows`` kernel rows (2: 16 vector registers)."""
    from ._direct import BLOCKS, BY_COLUMNS, BY_PLANES, FLAT, FUSED, TAPS

    _, cg, kd, kh, kw = wshape
    unit = sy == sx == dy == dx == 1
    fused = not planar and (cg, kd, kh, kw) == (1, 3, 3, 3) and sx == 1 and dx == 1
    if fused:  # all 27 taps in one pass; four rows per plane on 16 vector registers
        return BY_PLANES if block_rows < 3 and unit else FUSED
    if not planar and sx == 1 and sy == 1 and width < tuning.FLAT_MAX_WIDTH:
        return FLAT
    if planar or unit:  # pairs of rows through the tap blocks; four rows per kernel column of a 7 or 9
        return BY_COLUMNS if block_rows < 3 and kh in COLUMNS else BLOCKS
    return TAPS


# square kernels correlate_unrolled writes out whole, and the channel counts it reads interleaved
# (tools/generate_passes.py's WHOLE and SPACINGS)
UNROLLED = (3, 5)
UNROLLED_SPACINGS = (1, 3)
# kernel heights whose columns correlate_bank takes four rows at a time on 16 vector registers
# (tools/generate_passes.py's COLUMNS)
COLUMNS = (9, 7)


def _quads(k: int, block_rows: int, width: int, in_place: np.dtype | None, acc: np.dtype) -> int:
    """``correlate_unrolled``'s ``quads``: -1 for pairs; a 5x5 on 16 vector registers (2-row
    blocks) goes four rows at a time on the eight lines it reads when they spread over L1 (0), or
    on copies in rows that many cells longer, for rows read in place (``in_place``: their type)
    that crowd one set; rows converted into the ring that crowd go in pairs."""
    if k != 5 or block_rows >= 3:
        return -1
    itemsize = (in_place or acc).itemsize
    if tuning.rows_spread(width * itemsize, 8):
        return 0
    if in_place is None:
        return -1
    return next((pad for pad in range(16, 1025, 16) if tuning.rows_spread((width + pad) * itemsize, 8)), -1)


def _unrolled(w5: np.ndarray, geo3: geometry.Geometry, interleave: int) -> bool:
    """Whether ``correlate_unrolled`` takes the call: one plane of a whole 3x3/5x5 per output
    channel at unit y/x stride and dilation, grey or RGB, whatever the input type (rows it does
    not read in place are converted: a cell gets the same bits as from the same values in float)."""
    _, cg, kd, kh, kw = w5.shape
    return (
        cg == kd == 1 and kh == kw and kh in UNROLLED and interleave in UNROLLED_SPACINGS
        and geo3.stride[1:] == (1, 1) and geo3.dilation[1:] == (1, 1)
    )  # fmt: skip


def _holds(x: np.dtype, border: str, cval: float) -> bool:
    """Whether type ``x`` holds the constant border's value (any border but constant needs none)."""
    if border != "constant" or x.kind == "f":
        return True
    info = np.iinfo(x)
    return float(cval).is_integer() and info.min <= cval <= info.max


# the direct kernel's integer output when it has none (uint8, the type it most often fills, so
# float and 8-bit results share one compiled signature)
NO_INTEGERS = np.zeros((0, 0, 0, 0), np.uint8)


def separable3(
    xc: np.ndarray,
    factors: Sequence[np.ndarray],
    geo3: geometry.Geometry,
    border: str,
    acc: np.dtype,
    *,
    interleave: int = 1,
    band: Band | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """A fused separable pass over y and x (one kernel: column sums into a line in cache, then x
    along it), then a z pass for volumes.
    ``interleave``, ``band`` and ``out`` as in :func:`direct3`."""
    from ._direct import separable_yx

    # fresh writable copies: the factors are cached read-only, and Numba compiles read-only arrays apart
    fz, fy, fx = (np.array(f, dtype=acc) for f in geometry.lift(list(factors), 3, np.ones(1)))
    C, Z, H, WC = xc.shape
    W = WC // interleave
    Ho = geo3.out_shape[1] if band is None else band.out.shape[2]
    Wo = geo3.out_shape[2]
    ymap = index_map(H, *geo3.padding[1], border) if band is None else band.ymap
    xmap = index_map(W, *geo3.padding[2], border)
    sy, sx = geo3.stride[1:]
    dy, dx = geo3.dilation[1:]
    if interleave > 1:
        xmap = interleave_map(xmap, interleave)
        Wo, dx = Wo * interleave, dx * interleave
    n = 1 if tuning.serial(C * Z * Ho * Wo * (fy.size + fx.size)) else tasks.threads()
    block, col_tile = tuning.separable_tasks(Z, Ho, Wo, acc.itemsize, fy.size, dy, sy, sx, channels=C, n=n)
    zpass = not (fz.size == 1 and geo3.stride[0] == 1 and geo3.padding[0] == (0, 0))
    Zo = geo3.out_shape[0]
    zmap = index_map(Z, *geo3.padding[0], border)
    ring = _ring_plan(zmap, fz.size, Z) if zpass and Zo == Z and geo3.stride[0] == geo3.dilation[0] == 1 else None
    if band is not None:
        yx = band.out  # bands are 2-D: no z pass
    elif not zpass or ring is not None:  # (with a ring, z runs in place on the result: no second volume)
        yx = out if out is not None else buffers.empty((C, Z, Ho, Wo), acc)
    else:
        yx = buffers.empty((C, Z, Ho, Wo), acc)
    ntasks = C * Z * -(-Ho // block) * -(-Wo // col_tile)
    tasks.run(
        separable_yx, ntasks, xc, fy, fx, ymap, xmap, geo3.padding[2][0] * interleave, sy, sx, dy, dx, block,
        col_tile, yx, work=yx.size * (fy.size + fx.size),
    )  # fmt: skip
    if not zpass:
        if fz[0] != 1.0:
            yx *= fz[0]
        return yx
    # z is a column pass on (C, 1, Z, Ho*Wo) views: planes as rows, four output planes sharing the
    # source planes they read, in column tiles that stay in cache
    # (already interleaved columns need no remapping along z: the x axis is not padded here)
    HW = Ho * Wo
    if ring is not None:
        _columns_inplace(yx.reshape(C, 1, Z, HW), fz, *ring)
        res = yx
    else:
        res = out if out is not None else buffers.empty((C, Zo, Ho, Wo), acc)
        n = 1 if tuning.serial(res.size * fz.size) else tasks.threads()
        block, col_tile = tuning.separable_tasks(1, Zo, HW, acc.itemsize, fz.size, geo3.dilation[0], geo3.stride[0], 1, channels=C, n=n)
        tasks.run(
            separable_yx, C * -(-Zo // block) * -(-HW // col_tile), yx.reshape(C, 1, Z, HW), fz, np.ones(1, acc), zmap,
            np.arange(HW, dtype=np.int64), 0, geo3.stride[0], 1, geo3.dilation[0], 1, block, col_tile,
            res.reshape(C, 1, Zo, HW), work=res.size * (fz.size + 1),
        )  # fmt: skip
    return res


def _ring_plan(zmap: np.ndarray, taps: int, n: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """How :func:`columns_inplace` filters ``n`` rows in place along ``zmap`` (``taps`` taps, as
    many rows out as in): the padded rows' ring slots, the last row to load before each block of
    four, and the ring's size; None when a block would read a row that has left the ring
    (``wrap`` reads the first rows again at the end, unless all of them fit)."""
    rows = taps + 4
    reads = [zmap[i : min(i + 4, n) - 1 + taps] for i in range(0, n, 4)]
    # a row is loaded no later than the block that overwrites it, so the ring holds originals
    need = [max(int(r.max()), min(i + 4, n) - 1) for i, r in zip(range(0, n, 4), reads, strict=True)]
    load_to = np.maximum.accumulate(np.array(need, dtype=np.int64))
    for r, last in zip(reads, load_to, strict=True):
        r = r[r >= 0]
        if r.size and r.min() <= last - rows:  # evicted by a later row of the ring
            return None
    return np.where(zmap >= 0, zmap % rows, -1), load_to, rows


def _columns_inplace(x4: np.ndarray, f: np.ndarray, rmap: np.ndarray, load_to: np.ndarray, rows: int) -> None:
    from ._direct import columns_inplace

    C, _, H, N = x4.shape
    n = 1 if tuning.serial(x4.size * f.size) else tasks.threads()
    col_tile = tuning.ring_columns(N, rows, x4.itemsize, channels=C, n=n)
    tasks.run(columns_inplace, C * -(-N // col_tile), x4, f, rmap, load_to, rows, col_tile, work=x4.size * f.size)


def _banded(plan: Plan, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A large integer 2-D image (direct or separable), converted to float band by band.

    Each band of output rows converts only the source rows it reads (found through the border
    map), so the float copy of the input stays a few MB instead of 4x the image.
    """
    geo3, channels = plan.geo3, plan.channels
    H, W = a.shape[0], a.shape[1]
    _, Ho, Wo = geo3.out_shape
    sy, dy, kh = geo3.stride[1], geo3.dilation[1], geo3.kernel_shape[1]
    before, after = geo3.padding[1]
    ymap = index_map(H, before, after, plan.border)
    out = buffers.empty((1, 1, Ho, Wo * channels), plan.acc) if out is None else out
    for o0 in range(0, Ho, tuning.BAND_ROWS):
        o1 = min(Ho, o0 + tuning.BAND_ROWS)
        rows = ymap[o0 * sy : (o1 - 1) * sy + (kh - 1) * dy + 1]
        real = rows[rows >= 0]
        lo, hi = (int(real.min()), int(real.max())) if real.size else (0, 0)
        src = as_float(a[lo : hi + 1], plan.acc).reshape((1, 1, hi - lo + 1, W * channels))
        band = Band(np.where(rows >= 0, rows - lo, -1), out[:, :, o0:o1])
        res = run_canonical(src, plan, groups=1, interleave=channels, band=band)
        if res is not band.out:  # every path fills band.out today; stay correct if one stops
            band.out[...] = res
    return out
