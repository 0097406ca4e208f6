"""FFT correlation, tiled overlap-save on a thread pool, with exactly the direct path's border,
padding, stride and dilation semantics.

Each tile gathers its padded input straight from the border index maps (no padded copy of the
whole image), so memory stays bounded by the tile size; the FFT releases the GIL, so tiles run on
all cores. Constant cells read ``cval`` where the tiles gather them, so a tile that reads no
border is untouched by it (shifting the whole input by a large cval cost float32 precision
everywhere, also with valid padding).

The transforms come from the first of ``ducc0.fft``, ``scipy.fft`` and ``numpy.fft`` that is
installed (the ``fft`` extra brings the first two). All three descend from pocketfft; SciPy's
vectorises across the rows of a 2-D transform (a 512x512 float32 tile, forward and back: 1.8 ms
against numpy's 5.1 ms on a Xeon Sapphire Rapids), and ducc0, pocketfft's successor by the same
author, is faster again (2.1 ms against SciPy's 3.0 ms in one run on a busy machine).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from itertools import product
from typing import NamedTuple

import numpy as np

from .. import geometry
from . import buffers
from ._borders import index_map
from .tasks import threads
from .tuning import TILE_FFT_2D, TILE_FFT_3D


class Transforms(NamedTuple):
    """A real FFT library: ``forward(a, sizes, axes)`` is the half spectrum of ``a`` zero-padded to
    ``sizes`` along ``axes``; ``inverse(spec, sizes, axes)`` the real array of ``sizes`` back
    (scaled by 1/N), and may overwrite ``spec``."""

    name: str
    forward: Callable[[np.ndarray, list[int], list[int]], np.ndarray]
    inverse: Callable[[np.ndarray, list[int], list[int]], np.ndarray]


def _ducc() -> Transforms:
    import ducc0

    def forward(a: np.ndarray, sizes: list[int], axes: list[int]) -> np.ndarray:
        if [a.shape[ax] for ax in axes] != sizes:  # ducc0 takes no length: pad the kernel and edge tiles
            shape = list(a.shape)
            for ax, n in zip(axes, sizes, strict=True):
                shape[ax] = n
            padded = np.zeros(shape, a.dtype)
            padded[tuple(slice(0, n) for n in a.shape)] = a
            a = padded
        return ducc0.fft.r2c(a, axes=axes)

    def inverse(spec: np.ndarray, sizes: list[int], axes: list[int]) -> np.ndarray:
        return ducc0.fft.c2r(spec, axes=axes, lastsize=sizes[-1], forward=False, inorm=2, allow_overwriting_input=True)

    return Transforms("ducc0", forward, inverse)


def _scipy() -> Transforms:
    import scipy.fft

    return Transforms(
        "scipy",
        lambda a, sizes, axes: scipy.fft.rfftn(a, s=sizes, axes=axes),
        lambda spec, sizes, axes: scipy.fft.irfftn(spec, s=sizes, axes=axes, overwrite_x=True),
    )


def _numpy() -> Transforms:
    return Transforms(
        "numpy",
        lambda a, sizes, axes: np.fft.rfftn(a, s=sizes, axes=axes),
        lambda spec, sizes, axes: np.fft.irfftn(spec, s=sizes, axes=axes),
    )


BACKENDS: dict[str, Callable[[], Transforms]] = {"ducc0": _ducc, "scipy": _scipy, "numpy": _numpy}


def installed_backend() -> str:
    """The name of the library :func:`backend` takes, found without importing it (the cost model
    asks before every ``auto`` choice; scipy.fft takes 0.3 s to import): the first one installed,
    or the one :func:`backend` took once it has (a library installed but broken)."""
    return backend().name if backend.cache_info().currsize else _first_installed()


@lru_cache(maxsize=1)
def _first_installed() -> str:
    """(Looked up once: a search of sys.path cost 34 us, most of a small call's time.)"""
    return next(name for name in BACKENDS if name == "numpy" or importlib.util.find_spec(name) is not None)


@lru_cache(maxsize=1)
def backend() -> Transforms:
    """The first FFT library of :data:`BACKENDS` that imports (same results to rounding)."""
    for make in BACKENDS.values():
        try:
            return make()
        except ImportError:
            continue
    return _numpy()


def next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (sizes pocketfft handles fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _gather(arr: np.ndarray, idxs: list[np.ndarray], cval: float = 0.0) -> np.ndarray:
    """``arr`` read at the outer product of ``idxs`` (one index array per axis, -1 reading ``cval``).

    Every axis is first cut to the span its indices cover, so a take along one axis copies only the
    tile's cells on the others (an edge tile's take along y used to copy whole image rows)."""
    spans, local = [], []
    for idx in idxs:
        valid = idx[idx >= 0]
        lo, hi = (int(valid.min()), int(valid.max()) + 1) if valid.size else (0, 1)  # all constant: read 0, then cval
        spans.append(slice(lo, hi))
        local.append(None if np.array_equal(idx, np.arange(lo, hi)) else np.where(idx >= 0, idx - lo, -1))
    out = arr[tuple(spans)]
    for axis, sel in enumerate(local):
        if sel is None:
            continue
        out = np.take(out, np.maximum(sel, 0), axis=axis)
        missing = sel < 0
        if missing.any():
            out[(slice(None),) * axis + (missing,)] = cval
    return out


class AxisTiles(NamedTuple):
    """One axis of the tiling: output cells per tile, FFT length of the tiles, and of the last one
    (shorter when the last tile holds fewer cells)."""

    cells: int
    length: int
    last_length: int


def _axis_tiles(e: int, s: int, o: int, target: int) -> AxisTiles:
    """Tiles of ``target`` points (at least twice the kernel, so overlap-save wastes little), the
    last one no longer than its cells need: 4096 outputs of a 31-point kernel take eight 512-point
    tiles and a 270-point one, not a ninth of 512 points for 240 outputs."""
    if o == 1 and e == 1:
        return AxisTiles(1, 1, 1)
    length = max(target, next_fast_len(2 * e))
    t = min(max(1, (length - e) // s + 1), o)
    last = o - (-(-o // t) - 1) * t
    return AxisTiles(t, next_fast_len((t - 1) * s + e), next_fast_len((last - 1) * s + e))


def tile_plan(geo3: geometry.Geometry) -> list[AxisTiles]:
    """The tiling of each axis (z, y, x)."""
    ext = [geometry.effective_kernel(k, d) for k, d in zip(geo3.kernel_shape, geo3.dilation)]
    target = TILE_FFT_3D if geo3.in_shape[0] > 1 else TILE_FFT_2D
    return [_axis_tiles(e, s, o, target) for e, s, o in zip(ext, geo3.stride, geo3.out_shape)]


def fft_correlate(xc: np.ndarray, k3: np.ndarray, geo3: geometry.Geometry, border: str, cval: float = 0.0) -> np.ndarray:
    """(C, Z, H, W) -> (C, Zo, Ho, Wo): valid correlation of the padded input with the dilated kernel."""
    dtype = xc.dtype
    dil = geo3.dilation
    ext = tuple(geometry.effective_kernel(k, d) for k, d in zip(k3.shape, dil))
    kd = np.zeros(ext, dtype=dtype)
    kd[:: dil[0], :: dil[1], :: dil[2]] = k3
    kflip = kd[::-1, ::-1, ::-1]
    plan = tile_plan(geo3)
    axes = [i for i in range(3) if plan[i].length > 1] or [2]
    fft = backend()
    # the kernel's spectrum at each tile shape there is (the last tile of an axis may be shorter)
    shapes = product(*({plan[i].length, plan[i].last_length} for i in axes))
    kspecs = {sizes: fft.forward(kflip, list(sizes), axes) for sizes in shapes}
    maps = [index_map(n, b, a, border) for n, (b, a) in zip(xc.shape[1:], geo3.padding)]
    out = buffers.empty((xc.shape[0], *geo3.out_shape), dtype)
    starts = [range(0, o, p.cells) for o, p in zip(geo3.out_shape, plan)]

    def run_tile(task: tuple[int, tuple[int, ...]]) -> None:
        c, (z0, y0, x0) = task
        idxs, sel_out, lengths = [], [], []
        for axis, (o0, p, e, s) in enumerate(zip((z0, y0, x0), plan, ext, geo3.stride)):
            o1 = min(o0 + p.cells, geo3.out_shape[axis])
            n_in = (o1 - 1 - o0) * s + e
            idxs.append(maps[axis][o0 * s : o0 * s + n_in])
            sel_out.append((o0, o1, e, s))
            lengths.append(p.length if o1 - o0 == p.cells else p.last_length)
        block = _gather(xc[c], idxs, cval)
        sizes = tuple(lengths[i] for i in axes)
        spec = fft.forward(block, list(sizes), axes)
        spec *= kspecs[sizes]
        full = fft.inverse(spec, list(sizes), axes)  # (the spectrum is not read again)
        src = tuple(slice(e - 1, e - 1 + (o1 - o0 - 1) * s + 1, s) for o0, o1, e, s in sel_out)
        dst = (c,) + tuple(slice(o0, o1) for o0, o1, _, _ in sel_out)
        out[dst] = full[src]

    tasks = [(c, t) for c in range(xc.shape[0]) for t in product(*starts)]
    workers = min(len(tasks), threads())
    if workers <= 1:
        for task in tasks:
            run_tile(task)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(run_tile, tasks):
                pass
    return out
