"""The typed engine API: validate, canonicalise once, choose a method, call a private kernel.

Numba is imported only when a filter actually runs (``import convcli`` stays light).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .. import geometry
from ._borders import canonical_border, index_map
from ._cost import choose_method
from ._factor import MAX_LOW_RANK, separable_terms

METHODS = ("auto", "direct", "separable", "fft")
Method = Literal["auto", "direct", "separable", "fft"]
IntOrSeq = int | Sequence[int]


@dataclass(frozen=True)
class FilterResult:
    """A filtered array and how it was made (for the CLI's report)."""

    array: np.ndarray
    method: str
    geometry: geometry.Geometry
    channels: int


def accumulation_dtype(dtype: np.dtype) -> np.dtype:
    """float64 for float64 input, float32 for everything else (integers included)."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _check_numeric(a: np.ndarray, name: str) -> None:
    kind = a.dtype.kind
    if kind not in "iuf":
        what = {"b": "boolean", "c": "complex", "O": "object", "U": "string", "S": "bytes"}.get(kind, str(a.dtype))
        msg = f"{name} has dtype {a.dtype} ({what}); give an integer or real floating-point array"
        raise TypeError(msg)


def check_kernel(kernel: object, *, max_ndim: int = 3, name: str = "kernel") -> np.ndarray:
    """A finite, non-empty numeric kernel of 1..max_ndim axes, as float64."""
    k = np.asarray(kernel)
    _check_numeric(k, name)
    if k.ndim < 1 or k.ndim > max_ndim:
        msg = f"{name} has {k.ndim} axes (shape {k.shape}); give 1 to {max_ndim} axes"
        raise ValueError(msg)
    if k.size == 0:
        msg = f"{name} is empty (shape {k.shape})"
        raise ValueError(msg)
    k = k.astype(np.float64)
    if not np.all(np.isfinite(k)):
        msg = f"{name} contains NaN or Inf; every tap must be a finite number"
        raise ValueError(msg)
    return k


def _check_input(x: object, kernel_ndim: int) -> tuple[np.ndarray, bool]:
    a = np.asarray(x)
    _check_numeric(a, "x")
    if a.ndim == kernel_ndim:
        has_channels = False
    elif a.ndim == kernel_ndim + 1:
        has_channels = True
    else:
        msg = (
            f"x has shape {a.shape} and the kernel has {kernel_ndim} axes: x must have {kernel_ndim} "
            f"axes (one channel) or {kernel_ndim + 1} (channels last)"
        )
        raise ValueError(msg)
    if a.size == 0:
        msg = f"x is empty (shape {a.shape})"
        raise ValueError(msg)
    return a, has_channels


def _lift3(values: Sequence[int], fill: int = 1) -> tuple[int, int, int]:
    v = (fill,) * (3 - len(values)) + tuple(values)
    return v[0], v[1], v[2]


def as_float(a: np.ndarray, acc: np.dtype) -> np.ndarray:
    """A C-contiguous, writable copy-if-needed of ``a`` in ``acc``, converted in parallel."""
    if a.dtype == acc and a.flags.c_contiguous and a.flags.writeable:
        return a
    if a.size < (1 << 16) or not a.flags.c_contiguous:
        return np.array(a, dtype=acc, order="C")
    from ._convert import to_float

    out = np.empty(a.shape, dtype=acc)
    to_float(a.reshape(-1), out.reshape(-1))
    return out


def to_integer(a: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, int]:
    """``rint`` then clip to an integer type's range (NaN -> 0); returns the array and how many
    values were clipped or NaN."""
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    src = np.ascontiguousarray(a)
    if src.dtype.kind != "f":
        src = src.astype(np.float64)
    from ._convert import CHUNK, round_clip

    out = np.empty(src.shape, dtype=dtype)
    counts = np.zeros(max(1, -(-src.size // CHUNK)), dtype=np.int64)
    if src.size:
        round_clip(src.reshape(-1), float(info.min), float(info.max), out.reshape(-1), counts)
    return out, int(counts.sum())


def channel_stats(a: np.ndarray, channels: int) -> dict[str, np.ndarray | float]:
    """Finite-value count, min, max, mean and std per channel and overall, for channels-last data."""
    from ._stats import ROWS, partials, squares

    flat = np.ascontiguousarray(a).reshape(-1, channels)
    nb = max(1, -(-flat.shape[0] // ROWS))
    counts, sums = np.zeros((nb, channels)), np.zeros((nb, channels))
    mins, maxs = np.empty((nb, channels)), np.empty((nb, channels))
    partials(flat, counts, sums, mins, maxs)
    count, total = counts.sum(axis=0), sums.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = total / count
        mean_all = total.sum() / count.sum()
    sq, sq_all = np.zeros((nb, channels)), np.zeros(nb)
    squares(flat, np.nan_to_num(means), float(np.nan_to_num(mean_all)), sq, sq_all)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "count": count, "min": mins.min(axis=0), "max": maxs.max(axis=0), "mean": means,
            "std": np.sqrt(sq.sum(axis=0) / count), "count_all": float(count.sum()),
            "mean_all": float(mean_all), "std_all": float(np.sqrt(sq_all.sum() / count.sum())),
        }  # fmt: skip


def _interleaved_input(a: np.ndarray, acc: np.dtype) -> np.ndarray:
    """Channels-last (*spatial, C) as one channel (1, Z, H, W*C), without a transpose."""
    xf = as_float(a, acc)
    *spatial, c = xf.shape
    z, h, w = _lift3(spatial)
    return xf.reshape((1, z, h, w * c))


def _interleave_map(xmap: np.ndarray, channels: int) -> np.ndarray:
    """Pixel index map -> interleaved index map: padded cell p*C+ch reads m*C+ch (or -1)."""
    ch = np.arange(channels, dtype=np.int64)
    m = xmap[:, None] * channels + ch[None, :]
    return np.where(xmap[:, None] < 0, -1, m).reshape(-1)


def _canonical_input(a: np.ndarray, has_channels: bool, acc: np.dtype) -> np.ndarray:
    """(C, Z, H, W) C-contiguous writable array in the accumulation dtype: one copy at most."""
    if not has_channels:
        return as_float(a, acc).reshape((1, *_lift3(a.shape)))  # as_float copies read-only input
    planar = np.ascontiguousarray(np.moveaxis(a, -1, 0), dtype=acc)
    if not planar.flags.writeable:  # np.asarray(PIL image) is read-only; numba types those apart
        planar = planar.copy()
    return planar.reshape((planar.shape[0], *_lift3(planar.shape[1:])))


def _restore(out: np.ndarray, spatial_out: tuple[int, ...], has_channels: bool) -> np.ndarray:
    channels = out.shape[0]
    if not has_channels:
        return out.reshape(spatial_out)
    return np.ascontiguousarray(np.moveaxis(out.reshape((channels, *spatial_out)), 0, -1))


def _block_rows(out_rows: int, padded_width: int, itemsize: int, kh: int, dy: int, sy: int, other_tasks: int) -> int:
    """Rows per parallel task: the padded strip fits in L2, and there are enough tasks for the cores."""
    from numba import get_num_threads

    strip_rows = max(1, (256 * 1024) // max(1, padded_width * itemsize))
    block = max(1, (strip_rows - (kh - 1) * dy) // sy)
    block = min(block, 64, out_rows)
    threads = get_num_threads()
    while block > 1 and other_tasks * math.ceil(out_rows / block) < 4 * threads:
        block //= 2
    return block


def _direct3(
    xc: np.ndarray,
    w5: np.ndarray,
    geo3: geometry.Geometry,
    border: str,
    cval: float,
    groups: int,
    interleave: int = 1,
    ymap: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Run the direct kernel on canonical arrays; ``geo3`` is lifted to three axes.

    With ``interleave=C``, ``xc`` is (1, Z, H, W*C) channels-last data and the x axis is walked
    per channel (requires x-stride 1). ``ymap``/``out`` replace the row map and the output for
    one band of rows (see :func:`_banded`).
    """
    from ._direct import correlate_bank

    _, Z, H, WC = xc.shape
    W = WC // interleave
    maps = [index_map(n, b, a, border) for n, (b, a) in zip((Z, H, W), geo3.padding)]
    if ymap is not None:
        maps[1] = ymap
    sz, sy, sx = geo3.stride
    dz, dy, dx = geo3.dilation
    if interleave > 1:
        maps[2] = _interleave_map(maps[2], interleave)
    cout = w5.shape[0]
    acc = w5.dtype
    if out is None:
        Zo, Ho, Wo = geo3.out_shape
        out = np.empty((cout, Zo, Ho, Wo * interleave), dtype=acc)
    block = _block_rows(out.shape[2], maps[2].shape[0], acc.itemsize, w5.shape[3], dy, sy, cout * out.shape[1])
    correlate_bank(
        xc, w5, maps[0], maps[1], maps[2], geo3.padding[2][0] * interleave, acc.type(cval),
        sz, sy, sx, dz, dy, dx * interleave, groups, block, out,
    )  # fmt: skip
    return out


BAND_MIN_BYTES = 64 << 20  # float copies at least this big are made band by band
BAND_ROWS = 256


def _banded(a: np.ndarray, k3: np.ndarray, terms: list[list[np.ndarray]] | None, chosen: str,
            geo3: geometry.Geometry, border: str, cval: float, acc: np.dtype, channels: int) -> np.ndarray:  # fmt: skip
    """A large integer 2-D image (direct or separable), converted to float band by band.

    Each band of output rows converts only the source rows it reads (found through the border
    map), so the float copy of the input stays a few MB instead of 4x the image.
    """
    H, W = a.shape[0], a.shape[1]
    _, Ho, Wo = geo3.out_shape
    sy, dy, kh = geo3.stride[1], geo3.dilation[1], k3.shape[1]
    ymap = index_map(H, *geo3.padding[1], border)
    out = np.empty((1, 1, Ho, Wo * channels), dtype=acc)
    for o0 in range(0, Ho, BAND_ROWS):
        o1 = min(Ho, o0 + BAND_ROWS)
        rows = ymap[o0 * sy : (o1 - 1) * sy + (kh - 1) * dy + 1]
        real = rows[rows >= 0]
        lo, hi = (int(real.min()), int(real.max())) if real.size else (0, 0)
        band = as_float(a[lo : hi + 1], acc).reshape((1, 1, hi - lo + 1, W * channels))
        band_map = np.where(rows >= 0, rows - lo, -1)
        _run_canonical(band, k3, terms, chosen, geo3, border, cval, acc, 1, channels, band_map, out[:, :, o0:o1])
    return out


def _lift_geometry(geo: geometry.Geometry) -> geometry.Geometry:
    pad = 3 - len(geo.kernel_shape)
    return geometry.Geometry(
        in_shape=_lift3(geo.in_shape),
        kernel_shape=_lift3(geo.kernel_shape),
        stride=_lift3(geo.stride),
        dilation=_lift3(geo.dilation),
        padding=((0, 0),) * pad + geo.padding,
        out_shape=_lift3(geo.out_shape),
    )


def _depthwise(k3: np.ndarray, channels: int, acc: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(k3, (channels, 1, *k3.shape)), dtype=acc)


def run_filter(
    x: object,
    kernel: object,
    *,
    flip: bool = False,
    border: str = "reflect",
    padding: geometry.PaddingArg = "same",
    stride: IntOrSeq = 1,
    dilation: IntOrSeq = 1,
    cval: float = 0.0,
    method: str = "auto",
) -> FilterResult:
    """Correlate (or, with ``flip``, convolve) every channel of ``x`` with one kernel."""
    k = check_kernel(kernel)
    a, has_channels = _check_input(x, k.ndim)
    if method not in METHODS:
        msg = f"method={method!r} is not one of {', '.join(METHODS)}"
        raise ValueError(msg)
    border, zero = canonical_border(border)
    cval = 0.0 if zero else float(cval)
    spatial = a.shape[:-1] if has_channels else a.shape
    geo = geometry.plan_geometry(spatial, k.shape, padding=padding, stride=stride, dilation=dilation)
    if flip:
        k = np.ascontiguousarray(k[(slice(None, None, -1),) * k.ndim])
    terms = separable_terms(k) if method in ("auto", "separable") else None
    if method == "separable" and terms is None:
        msg = (
            f"method='separable' needs a kernel that is a sum of at most {MAX_LOW_RANK} separable terms "
            f"(rank-1 for 3-D); this {k.shape} kernel is not"
        )
        raise ValueError(msg)
    acc = accumulation_dtype(a.dtype)
    channels = a.shape[-1] if has_channels else 1
    chosen = choose_method(geo, len(terms) if terms else 0, channels, acc.itemsize) if method == "auto" else method

    geo3 = _lift_geometry(geo)
    k3 = k.reshape(geo3.kernel_shape)
    # Channels-last data stays interleaved (no transpose in or out) where the kernels allow it.
    interleaved = has_channels and channels > 1 and geo3.stride[2] == 1 and chosen != "fft"
    big = a.dtype != acc and a.nbytes * acc.itemsize >= BAND_MIN_BYTES * a.itemsize
    if big and chosen != "fft" and k.ndim == 2 and (interleaved or channels == 1):
        out = _banded(a, k3, terms, chosen, geo3, border, cval, acc, channels)
        return FilterResult(out.reshape((*geo.out_shape, channels) if has_channels else geo.out_shape), chosen, geo, channels)
    xc = _interleaved_input(a, acc) if interleaved else _canonical_input(a, has_channels, acc)
    groups, interleave = (1, channels) if interleaved else (channels, 1)
    out = _run_canonical(xc, k3, terms, chosen, geo3, border, cval, acc, groups, interleave)
    if interleaved:
        return FilterResult(out.reshape((*geo.out_shape, channels)), chosen, geo, channels)
    return FilterResult(_restore(out, geo.out_shape, has_channels), chosen, geo, channels)


def _run_canonical(
    xc: np.ndarray,
    k3: np.ndarray,
    terms: list[list[np.ndarray]] | None,
    chosen: str,
    geo3: geometry.Geometry,
    border: str,
    cval: float,
    acc: np.dtype,
    groups: int,
    interleave: int,
    ymap: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Run the chosen method on a canonical array (optionally one band: ``ymap``/``out``)."""
    if chosen == "direct":
        return _direct3(xc, _depthwise(k3, groups, acc), geo3, border, cval, groups, interleave, ymap, out)
    # Separable and FFT paths work on a zero border; a constant cval is added back as
    # cval*sum(k), exact for a linear filter.
    shift = cval if border == "constant" and cval != 0.0 else 0.0
    if shift:
        xc = xc - xc.dtype.type(shift)
    if chosen == "separable":
        assert terms is not None
        out = _separable3(xc, terms[0], geo3, border, groups, acc, interleave, ymap, out)
        scratch = np.empty_like(out) if len(terms) > 1 else None  # shaped like this band's output
        for term in terms[1:]:  # a low-rank kernel: one fused pass per rank-1 term
            out += _separable3(xc, term, geo3, border, groups, acc, interleave, ymap, scratch)
    else:
        from ._fft import fft_correlate

        out = fft_correlate(xc, k3, geo3, border)
    if shift:
        out += out.dtype.type(shift * float(k3.sum()))
    return out


SEPARABLE_BUFFER = 768 * 1024  # the x-filtered rows of one task stay in L2 (1 MiB per core here)


def _separable_block(col_tile: int, itemsize: int, kh: int, dy: int, sy: int, out_rows: int) -> int:
    """Output rows per separable task: more rows amortise the (kh-1)*dy halo rows filtered along x."""
    rows_fit = max(1, SEPARABLE_BUFFER // (col_tile * itemsize))
    return max(1, min(256, (rows_fit - (kh - 1) * dy) // sy, out_rows))


def _separable3(
    xc: np.ndarray,
    factors: list[np.ndarray],
    geo3: geometry.Geometry,
    border: str,
    channels: int,
    acc: np.dtype,
    interleave: int = 1,
    ymap: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """A fused y-x pass (one kernel, intermediate rows stay in cache), then a z pass for volumes.
    ``interleave``, ``ymap`` and ``out`` as in :func:`_direct3`."""
    from ._direct import separable_yx

    lifted = [np.ones(1)] * (3 - len(factors)) + list(factors)
    fz, fy, fx = (np.ascontiguousarray(f, dtype=acc) for f in lifted)
    C, Z, H, WC = xc.shape
    W = WC // interleave
    Ho = geo3.out_shape[1] if out is None else out.shape[2]
    Wo = geo3.out_shape[2]
    if ymap is None:
        ymap = index_map(H, *geo3.padding[1], border)
    xmap = index_map(W, *geo3.padding[2], border)
    sy, sx = geo3.stride[1:]
    dy, dx = geo3.dilation[1:]
    if interleave > 1:
        xmap = _interleave_map(xmap, interleave)
        Wo, dx = Wo * interleave, dx * interleave
    col_tile = min(Wo, 1024)
    block = _separable_block(col_tile, acc.itemsize, fy.size, dy, sy, Ho)
    if out is None:
        out = np.empty((C, Z, Ho, Wo), dtype=acc)
    separable_yx(xc, fy, fx, ymap, xmap, geo3.padding[2][0] * interleave, sy, sx, dy, dx, block, col_tile, out)
    if fz.size == 1 and geo3.stride[0] == 1 and geo3.padding[0] == (0, 0):
        if fz[0] != 1.0:
            out *= fz[0]
        return out
    gz = geometry.Geometry(
        (Z, Ho, Wo), (fz.size, 1, 1), (geo3.stride[0], 1, 1), (geo3.dilation[0], 1, 1),
        (geo3.padding[0], (0, 0), (0, 0)), (geo3.out_shape[0], Ho, Wo),
    )  # fmt: skip
    # (already interleaved columns need no remapping along z: the x axis is not padded here)
    return _direct3(out, _depthwise(fz.reshape(-1, 1, 1), C, acc), gz, border, 0.0, C)


def correlate(
    x: object,
    kernel: object,
    *,
    border: str = "reflect",
    padding: geometry.PaddingArg = "same",
    stride: IntOrSeq = 1,
    dilation: IntOrSeq = 1,
    cval: float = 0.0,
    method: Method = "auto",
) -> np.ndarray:
    """Cross-correlation (deep learning's "convolution"): ``out[i] = sum_j xpad[i*s + j*d] * k[j]``.

    ``x`` has ``kernel.ndim`` spatial axes and optionally a trailing channel axis, filtered channel
    by channel. Returns float32 (float64 for float64 input); values are never clipped.
    """
    return run_filter(
        x, kernel, flip=False, border=border, padding=padding, stride=stride,
        dilation=dilation, cval=cval, method=method,
    ).array  # fmt: skip


def convolve(
    x: object,
    kernel: object,
    *,
    border: str = "reflect",
    padding: geometry.PaddingArg = "same",
    stride: IntOrSeq = 1,
    dilation: IntOrSeq = 1,
    cval: float = 0.0,
    method: Method = "auto",
) -> np.ndarray:
    """True convolution: ``correlate(x, flip(kernel))`` with identical padding, for any kernel size."""
    return run_filter(
        x, kernel, flip=True, border=border, padding=padding, stride=stride,
        dilation=dilation, cval=cval, method=method,
    ).array  # fmt: skip


def run_layer(
    x: object,
    weight: object,
    bias: object | None = None,
    *,
    mode: str = "corr",
    border: str = "reflect",
    padding: geometry.PaddingArg = "same",
    stride: IntOrSeq = 1,
    dilation: IntOrSeq = 1,
    cval: float = 0.0,
) -> FilterResult:
    """The seed's Din -> Dout layer; see :func:`conv_layer`."""
    w = np.asarray(weight)
    _check_numeric(w, "weight")
    if w.ndim < 3 or w.ndim > 5:
        msg = f"weight has shape {w.shape}; give (Cout, Cin, *kernel) with 1 to 3 kernel axes"
        raise ValueError(msg)
    w = check_kernel(w, max_ndim=5, name="weight")
    if mode not in ("corr", "conv"):
        msg = f"mode={mode!r} is not 'corr' or 'conv'"
        raise ValueError(msg)
    cout, cin = w.shape[:2]
    kshape = w.shape[2:]
    a = np.asarray(x)
    _check_numeric(a, "x")
    if a.ndim != len(kshape) + 1:
        msg = f"x has shape {a.shape}; a layer with {len(kshape)}-axis kernels needs channels-last x with {len(kshape) + 1} axes"
        raise ValueError(msg)
    if a.shape[-1] != cin:
        msg = f"x has {a.shape[-1]} channels (shape {a.shape}) but weight {w.shape} expects Cin = {cin}"
        raise ValueError(msg)
    if a.size == 0:
        msg = f"x is empty (shape {a.shape})"
        raise ValueError(msg)
    b = None
    if bias is not None:
        b = np.asarray(bias)
        _check_numeric(b, "bias")
        if b.shape != (cout,):
            msg = f"bias has shape {b.shape}; weight {w.shape} needs ({cout},)"
            raise ValueError(msg)
        if not np.all(np.isfinite(b)):
            msg = "bias contains NaN or Inf"
            raise ValueError(msg)
    border, zero = canonical_border(border)
    cval = 0.0 if zero else float(cval)
    geo = geometry.plan_geometry(a.shape[:-1], kshape, padding=padding, stride=stride, dilation=dilation)
    if mode == "conv":
        w = w[(slice(None), slice(None)) + (slice(None, None, -1),) * len(kshape)]
    acc = accumulation_dtype(a.dtype)
    xc = _canonical_input(a, True, acc)
    geo3 = _lift_geometry(geo)
    w5 = np.ascontiguousarray(w.reshape((cout, cin, *geo3.kernel_shape)), dtype=acc)
    out = _direct3(xc, w5, geo3, border, cval, 1)
    if b is not None:
        out += b.astype(acc).reshape((cout, 1, 1, 1))
    return FilterResult(_restore(out, geo.out_shape, True), "direct", geo, cout)


def conv_layer(
    x: object,
    weight: object,
    bias: object | None = None,
    *,
    mode: str = "corr",
    border: str = "reflect",
    padding: geometry.PaddingArg = "same",
    stride: IntOrSeq = 1,
    dilation: IntOrSeq = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Multi-channel layer: ``x (*spatial, Cin)``, ``weight (Cout, Cin, *k)`` -> ``(*out, Cout)``.

    Output channel ``j = sum_c op(x[..., c], weight[j, c]) + bias[j]`` where ``op`` is correlation
    (``mode="corr"``, as in PyTorch) or convolution (``mode="conv"``).
    """
    return run_layer(
        x, weight, bias, mode=mode, border=border, padding=padding, stride=stride,
        dilation=dilation, cval=cval,
    ).array  # fmt: skip


def warmup(full: bool = True) -> None:
    """Compile (or load from the on-disk cache) the kernel signatures convcli uses: float32
    accumulation and 8/16-bit conversions, and with ``full`` the float64 ones too."""
    for dtype in (np.uint8, np.uint16):
        as_float(np.zeros(1 << 17, dtype=dtype), np.dtype(np.float32))
        channel_stats(np.zeros((4, 3), dtype=dtype), 3)
    channel_stats(np.zeros((4, 3), dtype=np.float32), 3)
    for acc in (np.float32, np.float64) if full else (np.float32,):
        to_integer(np.zeros(4, dtype=acc), np.dtype(np.uint8))
        to_integer(np.zeros(4, dtype=acc), np.dtype(np.uint16))
        x = np.zeros((4, 4, 2), dtype=acc)
        run_filter(x, np.ones((3, 3)), method="direct")
        run_filter(x, np.ones((3, 3)), method="separable")
