"""Every tuning number of the engine in one place: block sizes, band thresholds, FFT tiles and the
cost model behind ``method="auto"``.

Two kinds live here. Numbers read inside ``@njit`` kernels (``CONVERT_CHUNK``, ``STATS_ROWS``,
``FLAT_*``) are frozen into Numba's on-disk cache at compile time, so they must stay plain
constants: never derive them from the machine. Numbers the Python layer uses to size work (block
rows, band sizes, tiles) are passed to the kernels as arguments, so they may depend on the machine.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

from .. import geometry

# --- compiled into kernels (constants) -------------------------------------------------------------
CONVERT_CHUNK = 1 << 16  # values per task of the float/integer conversions
STATS_ROWS = 1 << 15  # rows per task of the statistics reduction
FLAT_MAX_WIDTH = 1024  # narrower rows use the flat direct path

# --- sizing work (Python side) ---------------------------------------------------------------------
# Cache-sized buffers follow this machine's per-core L2 (l2_bytes, read at run time), capped where
# larger buffers stopped paying (measured at 4096^2 float32 on a 2 MiB L2, Xeon Sapphire Rapids,
# CPU time best of 7, interleaved: see direct_strip_bytes and separable_buffer_bytes).
DIRECT_STRIP_MAX = 256 * 1024  # the padded input strip of one direct task, at most
DIRECT_BLOCK_MAX = 64  # output rows per direct task, at most
DIRECT_BLOCK_MIN = 16  # ... and at least, where the strips still fit half of L2 (direct_tasks)
TASKS_PER_THREAD = 4  # split blocks until every thread has about this many tasks
SEPARABLE_BUFFER_MAX = 768 * 1024  # the source rows a separable task reads again, at most
SEPARABLE_BLOCK_MAX = 256  # output rows per separable task, at most
SEPARABLE_COL_MIN = 256  # output columns per separable task, at least
BAND_MIN_BYTES = 64 << 20  # float copies of 8/16-bit 2-D images at least this big go band by band
BAND_ROWS = 256  # output rows per band
TILE_FFT_2D = 512  # FFT length per axis for 2-D tiles (forward+inverse per Mpixel: numpy.fft 17 ms, scipy.fft 7)
TILE_FFT_3D = 96
PARALLEL_CONVERT_MIN = 1 << 21  # smaller arrays are converted to float by numpy (no kernel to load)
NUMPY_POSTPROCESS_MIN_COMPILED = 1 << 21  # smaller results are cast and summarised by numpy
NUMPY_POSTPROCESS_MAX = 1 << 24  # ... and up to this while Numba is not loaded: every result of a numpy
#   filter (values <= multiply-adds < NUMPY_MAX_MACS), so such a call never loads Numba
COMPILE_NOTICE_SECONDS = 0.5  # a first-run compile longer than this is announced on stderr
SERIAL_MAX_MACS = 1 << 20  # smaller filters run on the calling thread: no parallel launch (see serial)
NUMPY_MAX_MACS = 1 << 24  # smaller filters run in plain numpy: no Numba to load (see numpy_small)


@lru_cache(maxsize=1)
def l2_bytes() -> int:
    """This machine's per-core L2 cache size (sysfs, then sysconf), or 1 MiB if neither says."""
    return _cache_bytes(2) or 1 << 20


@lru_cache(maxsize=1)
def l3_share_bytes() -> int:
    """This core's share of the last-level (L3) cache: its size over the CPUs sharing it (sysfs,
    then sysconf over the cores), or four times L2 if neither says."""
    return _cache_bytes(3) or 4 * l2_bytes()


CPU0_CACHES = "/sys/devices/system/cpu/cpu0/cache"


def _cache_bytes(level: int) -> int:
    """CPU 0's unified or data cache of ``level`` (level 3: over the CPUs that share it; an L2
    shared by a core's hyperthreads counts whole, as measured); 0 if unknown."""
    try:
        for index in sorted(os.listdir(CPU0_CACHES)):
            base = f"{CPU0_CACHES}/{index}"
            with open(f"{base}/level") as fh:
                if fh.read().strip() != str(level):
                    continue
            with open(f"{base}/type") as fh:
                if fh.read().strip() == "Instruction":
                    continue
            with open(f"{base}/size") as fh:
                text = fh.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
            size = int(text.rstrip("KM")) * scale
            return size // _count_cpus(f"{base}/shared_cpu_list") if level == 3 else size
    except (OSError, ValueError):
        pass
    name = f"SC_LEVEL{level}_CACHE_SIZE"
    size = os.sysconf(name) if name in os.sysconf_names else 0
    if size > 0 and level == 3:  # (shared by how many, sysconf does not say: all of them, at worst)
        size //= max(1, os.cpu_count() or 1)
    return max(0, size)


@lru_cache(maxsize=1)
def l1_way_bytes() -> int:
    """The span of one way of this machine's L1 data cache (its sets times its line: addresses
    this far apart share a set), from sysfs, else sysconf; 4 KiB if neither says."""
    def field(index: str, name: str) -> str:
        with open(f"{CPU0_CACHES}/{index}/{name}") as fh:
            return fh.read().strip()

    try:
        for index in sorted(os.listdir(CPU0_CACHES)):
            if field(index, "level") == "1" and field(index, "type") != "Instruction":
                return int(field(index, "number_of_sets")) * int(field(index, "coherency_line_size")) or 4096
    except (OSError, ValueError):
        pass
    size, ways = (os.sysconf(n) if n in os.sysconf_names else 0 for n in ("SC_LEVEL1_DCACHE_SIZE", "SC_LEVEL1_DCACHE_ASSOC"))
    return size // ways if size > 0 and ways > 0 else 4096


def rows_spread(stride_bytes: int, rows: int) -> bool:
    """Whether ``rows`` lines ``stride_bytes`` apart, read side by side, spread over L1's sets (at
    most two in one set). The 5x5 in fours reads eight: on rows of 4096 float32 every line fell in
    one set of the 8-way L1, and 4096^2 ran at the speed of pairs (45 against 48 ms) where a
    4000-wide image took 33 against 44 (Zen 1, one thread)."""
    way = l1_way_bytes()
    line = 64
    counts: dict[int, int] = {}
    for r in range(rows):
        cell = (r * stride_bytes % way) // line
        counts[cell] = counts.get(cell, 0) + 1
    return max(counts.values()) <= 2


def _count_cpus(path: str) -> int:
    """How many CPUs a sysfs CPU list (``0-3,8``) names; 1 if the file is missing."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return 1
    count = 0
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return max(1, count)


def direct_strip_bytes() -> int:
    """The padded input strip of one direct task: half of L2, at most 256 KiB.

    On a 2 MiB L2 (Xeon Sapphire Rapids): 9x9 took 127 ms of CPU with 256 KiB strips, 131 with
    512 KiB, 134 with 1 MiB and 153 with 128 KiB; 3x3 and 5x5 were within 5% from 128 KiB to 1 MiB.
    On a 512 KiB L2 (AMD EPYC Zen 1, 4096^2, one thread) 256 KiB strips beat a quarter of L2 too:
    9x9 206 -> 184 ms, 15x15 991 -> 490 ms.
    """
    return min(l2_bytes() // 2, DIRECT_STRIP_MAX)


def separable_buffer_bytes() -> int:
    """The source rows a separable task reads again (four output rows at a time): three quarters
    of L2, at most 768 KiB; a column tile keeps them within it (``separable_tasks``).

    Measured for the earlier x-first kernel on a 2 MiB L2 (a Gaussian 31: 126 ms of CPU with
    256 KiB, 106 with 512 KiB, 98-111 with 768 KiB to 1.5 MiB); for the y-first kernel, tiles of
    2048 and 4096 columns (the whole row at 4096^2) ran alike.
    """
    return min(3 * l2_bytes() // 4, SEPARABLE_BUFFER_MAX)


def numpy_block_bytes() -> int:
    """The numpy path's accumulator block: a quarter of L2, so the accumulator, the product of a
    tap and the input rows it reads stay in cache through all of a block's taps."""
    return max(l2_bytes() // 4, 64 * 1024)


def numpy_products_bytes() -> int:
    """Every tap's products at once (two numpy calls) while they fit this core's share of L3,
    else tap by tap in blocks of :func:`numpy_block_bytes` (three calls per tap and block).

    Measured on an AMD EPYC Zen 1 (512 KiB L2, 4 MiB of L3 per core; float32, Python 3x slower
    than a Xeon's): 64x64 3x3 (165 KiB of products) 49 us at once against 109 tap by tap,
    192x192 5x5 (3.8 MiB) 400 against 611, 256x256 5x5 (6.8 MiB) 1005 against 968, and
    256x256 7x7 (13 MiB) 2806 against 1899."""
    return max(l3_share_bytes(), numpy_block_bytes())


def serial(macs: int) -> bool:
    """Whether ``macs`` multiply-adds run on the calling thread (the kernels' serial twins).

    Waking Numba's threads costs tens of microseconds on an idle machine and up to milliseconds
    when the cores are busy (issue 14: a 64x64 3x3 call took 1.5 ms on 2 busy threads against
    0.5 ms on 1), more than a small filter itself: below ``SERIAL_MAX_MACS`` (about 0.1 ms of work
    on one core) the call stays serial, so it never gets slower with more threads.
    Above it, even one thread runs the parallel kernel: the serial twin measured 15-25% more CPU
    time at 4096^2 (Numba optimises the prange body better).
    """
    return macs < SERIAL_MAX_MACS


def numpy_small(macs: float) -> bool:
    """Whether a filter of ``macs`` multiply-adds runs in plain numpy instead of the compiled kernels.

    ``macs`` counts numpy's own costs (:func:`numpy_work`), at about 0.65 ns each on one core
    (3x3 on a 512x512 RGB image: 10M, 6.5 ms), the compiled kernels 5-10x faster; but a process
    pays 0.5-1 s to import Numba and load a kernel from the cache, and 15-30 s to compile it on
    a first run. Below ``NUMPY_MAX_MACS`` numpy's whole cost stays under a tenth of that start-up.
    """
    return macs < NUMPY_MAX_MACS


NUMPY_TAP_MACS = 2000  # numpy's Python overhead per tap (about 2 us), in multiply-adds
NUMPY_PASS_MACS = 16000  # numpy's fixed cost of one filter pass (~10 us of Python), in multiply-adds
NUMPY_PASS_CELL = 4  # ... and per output cell (the pass's array allocated, written and cropped)
NUMPY_FLAT_SPAN = 2  # the flat form computes on the padded grid: at most this many cells per output cell


def numpy_span(geo: geometry.Geometry) -> int | None:
    """The cells (per channel) that the numpy path's flat form computes for a direct pass: the
    output's rows on the padded grid's row pitch, or None where it does not pay (a stride, or a
    kernel so wide against the output that the padded grid is over NUMPY_FLAT_SPAN times the
    output: ``_small`` then adds strided views)."""
    if geo.stride.count(1) != len(geo.stride):
        return None
    return flat_span(geo.out_shape, tuple([n + b + a for n, (b, a) in zip(geo.in_shape, geo.padding, strict=True)]))


def flat_span(out_shape: tuple[int, ...], padded: tuple[int, ...]) -> int | None:
    """:func:`numpy_span` of a unit-stride pass from its output and padded input shapes."""
    span = out_shape[0] * math.prod(padded[1:])
    return span if span <= NUMPY_FLAT_SPAN * math.prod(out_shape) else None


def numpy_work(
    geo: geometry.Geometry, method: str, terms: tuple[tuple[object, ...], ...] | None, channels: int, values: int, itemsize: int = 4
) -> int:
    """What a direct or separable filter costs the numpy path (``_small``), in multiply-adds:
    each pass's multiply-adds over the cells it computes plus its overhead (a direct filter is
    one pass, a separable one a pass per axis and term), and at least the input's ``values``
    (the numpy path holds float copies of the whole padded input, so a big input with a big
    stride stays compiled).

    Fitted on float32 512x512 RGB and 64x64 (Xeon, best of 15): there a 3x3 direct beat its
    separable passes (6.8 vs 7.6 ms; 70 vs 107 us) and a 5x5 ran faster separable; near the
    crossing (3x3 from about 200x200 on) the two are within 15% either way."""
    out = math.prod(geo.out_shape) * channels
    if method == "separable" and terms:
        work = len(terms) * sum(_numpy_pass(out, out, k, itemsize) for k in geo.kernel_shape)
    else:
        span = numpy_span(geo)
        work = _numpy_pass(out, None if span is None else span * channels, math.prod(geo.kernel_shape), itemsize)
    return max(work, values)


def _numpy_pass(out: int, span: int | None, taps: int, itemsize: int) -> int:
    """One pass of ``_small.direct``: on ``span`` cells in its flat form (two numpy calls when every
    tap's products fit numpy_products_bytes, else three calls per tap and block), or with strided
    views of the ``out`` cells (``span`` None: two calls per tap)."""
    fixed = out * NUMPY_PASS_CELL + NUMPY_PASS_MACS
    if span is None:
        return out * taps + fixed + NUMPY_TAP_MACS * taps
    if span * (taps + 1) * itemsize <= numpy_products_bytes():
        return span * taps + fixed
    blocks = -(-span * 2 * itemsize // numpy_block_bytes())
    return span * taps + fixed + NUMPY_TAP_MACS * taps * blocks


def numpy_method(
    geo: geometry.Geometry,
    chosen: str,
    terms: tuple[tuple[object, ...], ...] | None,
    channels: int,
    values: int,
    work: int | None = None,
    itemsize: int = 4,
) -> str:
    """``auto``'s method on the numpy back end: direct or separable, whichever :func:`numpy_work`
    finds cheaper. numpy pays for every pass over the whole image, while the compiled kernels
    keep rows in cache, so the two back ends choose apart. ``work``: ``chosen``'s numpy_work,
    when the caller has it."""
    if chosen not in ("direct", "separable") or not terms:
        return chosen
    if chosen == "direct" and work is not None:
        # every pass costs at least its fixed part: most small calls stop here (it is Python)
        passes = len(terms) * len(geo.kernel_shape)
        if work <= passes * (NUMPY_PASS_MACS + NUMPY_PASS_CELL * math.prod(geo.out_shape) * channels):
            return "direct"
    cost = {m: work if m == chosen and work is not None else numpy_work(geo, m, terms, channels, values, itemsize) for m in ("direct", "separable")}
    return "separable" if cost["separable"] < cost["direct"] else "direct"


def layer_numpy_work(out_cells: int, weight_shape: tuple[int, ...], values: int) -> int:
    """:func:`numpy_work` for a ``(Cout, Cin, *k)`` layer: every channel pair's multiply-adds,
    the per-tap overhead of its spatial taps, and at least the input's ``values``."""
    return max(out_cells * math.prod(weight_shape) + NUMPY_TAP_MACS * math.prod(weight_shape[2:]), values)


def direct_ring_bytes(ring: int) -> int:
    """The strips of one direct task: one strip for a 2-D kernel; for a kernel ``ring`` padded planes
    deep, one strip per plane, together at most half of L2 (a 7^3 kernel's strips would otherwise
    hold a few rows each, and the kh-1 halo rows of each strip would be converted again and again)."""
    strip = direct_strip_bytes()
    return strip if ring == 1 else max(strip, min(l2_bytes() // 2, ring * strip))


def direct_tasks(out_planes: int, out_rows: int, padded_width: int, itemsize: int, ring: int, kh: int, dy: int, sy: int, *, channels: int, n: int, kd: int = 0, fours: bool = False) -> tuple[int, int]:
    """Output rows per direct task and output planes per task (a run: the ring of ``ring`` strips
    converts each input plane once per run). The strips fit :func:`direct_ring_bytes`; runs, then
    blocks, are split until ``n`` threads have enough tasks (no splitting for one). When even
    one-row strips of the whole ring overflow that budget (deep z- and y-dilation), runs are one
    plane long and the kernel keeps only ``kd`` strips. ``fours``: the kernel goes four rows at a
    time, so a block of more than four rows is cut to a multiple of four, and threads split blocks
    no smaller than four (a 7x7 at 4096^2 had blocks of 9 rows, three of every twelve rows it
    computed thrown away: 91 against 73 ms on a Zen 1)."""
    least = 4 if fours else 1
    if kd and ring > kd and ring * ((kh - 1) * dy + 1) * padded_width * itemsize > direct_ring_bytes(ring):
        strip_rows = max(1, direct_ring_bytes(kd) // max(1, kd * padded_width * itemsize))
        block = _whole_fours(min(max(1, (strip_rows - (kh - 1) * dy) // sy), DIRECT_BLOCK_MAX, out_rows), fours)
        while n > 1 and block > least and channels * out_planes * math.ceil(out_rows / block) < TASKS_PER_THREAD * n:
            block = _whole_fours(block // 2, fours)
        return block, 1
    strip_rows = max(1, direct_ring_bytes(ring) // max(1, ring * padded_width * itemsize))
    block = max(1, (strip_rows - (kh - 1) * dy) // sy)
    if block < kh:
        # a tall kernel on wide rows: a block shorter than the kernel converts more halo rows than
        # it filters (15x15 at 4096^2 had one row per strip); up to DIRECT_BLOCK_MIN rows while
        # the strips fit L2 (1 thread, 4096^2: 9x9 64 -> 47 ms, 15x15 324 -> 118 ms on a 2 MiB L2;
        # on a 512 KiB L2, 21x21 1781 -> 994 ms with the whole L2 against half of it)
        fit = (l2_bytes() // max(1, ring * padded_width * itemsize) - (kh - 1) * dy) // sy
        block = max(block, min(DIRECT_BLOCK_MIN, fit))
    block = _whole_fours(min(block, DIRECT_BLOCK_MAX, out_rows), fours)
    zrun = out_planes

    def count() -> int:
        return channels * math.ceil(out_planes / zrun) * math.ceil(out_rows / block)

    while n > 1 and zrun > 1 and count() < TASKS_PER_THREAD * n:
        zrun = math.ceil(zrun / 2)
    while n > 1 and block > least and count() < TASKS_PER_THREAD * n:
        block = _whole_fours(block // 2, fours)
    return block, zrun


def _whole_fours(block: int, fours: bool) -> int:
    """``block`` cut to a multiple of four when the kernel goes four rows at a time (and above four)."""
    return block - block % 4 if fours and block > 4 else block


def block_rows(registers: int) -> int:
    """Kernel rows per tap block of the direct kernel (``_passes.add_block``): 3 where the CPU has 32
    vector registers (AVX-512), else 2. A 3x5 block keeps 15 weights and two accumulators in
    registers, which 16 (AVX2) cannot hold: the weights spilled to the stack, and on an AMD EPYC
    Zen 1 (one thread, 4096^2) 2-row blocks ran 7x7 113 -> 99 ms, 9x9 204 -> 170, 11x11 285 -> 248."""
    return 3 if registers >= 32 else 2


def unrolled_block(planes: int, out_rows: int, *, n: int) -> int:
    """Output rows per task of ``correlate_unrolled`` (no buffers to size): up to DIRECT_BLOCK_MAX,
    halved until ``n`` threads have enough tasks."""
    block = max(1, min(DIRECT_BLOCK_MAX, out_rows))
    while n > 1 and block > 1 and planes * math.ceil(out_rows / block) < TASKS_PER_THREAD * n:
        block //= 2
    return block


def separable_tasks(out_planes: int, out_rows: int, out_cols: int, itemsize: int, kh: int, dy: int, sy: int, sx: int, *, channels: int, n: int) -> tuple[int, int]:
    """Output rows and columns per separable task. The source rows that the next output rows read
    (four at a time at unit y-stride and dilation: ``(kh-1)*dy + 4*sy`` rows, bounding the one-row
    path too) are read again by the ones after: a column tile keeps them within
    :func:`separable_buffer_bytes`. Blocks, multiples of four rows, are split until ``n`` threads
    have enough tasks."""
    window = ((kh - 1) * dy + 4 * sy) * sx * itemsize
    col_tile = min(out_cols, max(SEPARABLE_COL_MIN, separable_buffer_bytes() // max(1, window)))
    block = max(1, min(SEPARABLE_BLOCK_MAX, out_rows))

    def count() -> int:
        return channels * out_planes * math.ceil(out_rows / block) * math.ceil(out_cols / col_tile)

    while n > 1 and block > 4 and count() < TASKS_PER_THREAD * n:
        block = max(4, block // 2 // 4 * 4)
    return block, col_tile


def ring_columns(cols: int, rows: int, itemsize: int, *, channels: int, n: int) -> int:
    """Columns per task of the in-place column pass: its ring of ``rows`` source rows within
    :func:`separable_buffer_bytes`, split until ``n`` threads have enough tasks."""
    tile = min(cols, max(SEPARABLE_COL_MIN, separable_buffer_bytes() // (rows * itemsize)))
    while n > 1 and tile > SEPARABLE_COL_MIN and channels * math.ceil(cols / tile) < TASKS_PER_THREAD * n:
        tile = max(SEPARABLE_COL_MIN, tile // 2)
    return tile


# --- the cost model behind method="auto" -----------------------------------------------------------
# Per output cell, in nanoseconds on the 2-core CI machine (both cores), fitted to
# ``benchmarks/bench_engine.py`` (float32 4096^2 and 192^3). Only the ratios matter: every method
# scales the same way with the channel count and the item size.
DIRECT_2D = (0.26, 0.0125)  # fixed, per tap
DIRECT_3D = (0.4, 0.013)
SEPARABLE_2D = (0.23, 0.025)  # fixed, per tap of the two 1-D factors
# tiled overlap-save through ducc0, per computed cell: direct and FFT cost the same at about 21x21
# (2-D, 4096^2) and 8x8x8-9x9x9 (192^3 and 128^3), on one thread and on two
FFT_2D = 5.6  # 512-point tiles
# the separate cast to 8/16 bits the other methods pay where the direct kernel casts inside (uint8
# RGB 4000x3000, Gaussian, direct / separable: 5x5 35 / 66 ms, 7x7 77 / 85, 9x9 72 / 73, 11x11 103 / 81)
CAST_PASS = 0.4
FFT_3D = 9.0  # 96-point tiles
# the FFT path's cost through each library against ducc0's (_fft.BACKENDS; the transforms alone
# cost scipy.fft 1.2-1.7x and numpy.fft 1.7-2.7x ducc0's, the gathering and copying the same): the
# crossing moves to about 23x23 with scipy.fft and 26x26 with numpy.fft (2048^2, 1 thread: numpy.fft
# 31x31 114-122 ms against direct 174, 27x27 121 against 133; scipy.fft 25x25 86 against 118)
FFT_BACKEND_COST = {"ducc0": 1.0, "scipy": 1.2, "numpy": 1.6}


def _volume(geo: geometry.Geometry) -> bool:
    """A 3-D kernel more than one plane deep (the 3-D direct kernel's costs)."""
    return len(geo.kernel_shape) == 3 and geo.kernel_shape[0] > 1


def method_costs(
    geo: geometry.Geometry, separable: int, *, fft_backend: str, fused_cast: bool = False, direct_scale: float = 1.0
) -> dict[str, float]:
    """Estimated cost of each method; ``separable`` is the number of rank-1 terms (0: none);
    ``fused_cast``: the result goes to 8/16 bits, which only the direct kernel does inside;
    ``fft_backend``: the FFT library the tiles would use (a key of FFT_BACKEND_COST);
    ``direct_scale``: this machine's 2-D direct kernel against the FFT, relative to the fit above
    (``engine.calibration``; the fit is the Xeon's, and an AVX2 Zen 1 measures 3.0-3.3)."""
    out = math.prod(geo.out_shape)
    taps = math.prod(geo.kernel_shape)
    volume = _volume(geo)
    fixed, per_tap = DIRECT_3D if volume else DIRECT_2D
    costs = {"direct": out * (fixed + per_tap * taps) * (1.0 if volume else direct_scale)}
    if separable and len(geo.kernel_shape) >= 2:
        ky, kx = geo.kernel_shape[-2:]
        sep = SEPARABLE_2D[0] + SEPARABLE_2D[1] * (ky + kx)
        if len(geo.kernel_shape) == 3:
            kz = geo.kernel_shape[0]
            sep += DIRECT_3D[0] + DIRECT_3D[1] * kz if kz > 1 else 0.0
        costs["separable"] = out * sep * separable
    if taps > 1:
        # the FFT computes every cell at full resolution, then keeps every stride-th
        costs["fft"] = out * math.prod(geo.stride) * (FFT_3D if volume else FFT_2D) * FFT_BACKEND_COST[fft_backend]
    if fused_cast:
        costs = {m: c if m == "direct" else c + out * CAST_PASS for m, c in costs.items()}
    return costs


def cheapest(costs: dict[str, float]) -> str:
    """The method of least cost (of :func:`method_costs`); ties go to direct (exact border
    handling, no FFT rounding)."""
    best, least = "direct", costs["direct"]
    for method, cost in costs.items():
        if cost < least:
            best, least = method, cost
    return best


# direct_scale is measured (engine.calibration) only where it could change the choice, within
# CALIBRATE_SCALE (the range a measured scale is clamped to), for a filter whose direct kernel
# would run at least CALIBRATE_MIN_NS by the fit (the measurement takes about 0.3 s once per
# machine, plus compiling the float32 direct kernel if no run has). The fit is the AVX-512 Xeon's,
# the fastest kind at direct against the FFT: a measured scale only moves work off the direct
# kernel, so a filter the fit sends to the FFT never measures (or compiles) anything.
CALIBRATE_SCALE = (1.0, 8.0)
CALIBRATE_MIN_NS = 5e6


def calibration_matters(costs: dict[str, float], geo: geometry.Geometry) -> bool:
    """Whether a measured ``direct_scale`` could change the choice among ``costs`` (at scale 1):
    the direct cost scales with it, and the others stay (one pass over ``costs``: small calls
    ask this too)."""
    direct = costs["direct"]
    if direct < CALIBRATE_MIN_NS or _volume(geo):  # (volumes keep the fit)
        return False
    others = min((c for m, c in costs.items() if m != "direct"), default=math.inf)
    lo, hi = CALIBRATE_SCALE
    return lo * direct <= others < hi * direct
