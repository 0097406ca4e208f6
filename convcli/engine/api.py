"""The typed engine API: validate, plan once, dispatch to a private kernel.

Numba is imported only when a filter actually runs (``import convcli`` stays light).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import geometry
from . import tasks, tuning
from .dispatch import direct3, execute, execute_cast
from .layout import accumulation_dtype, lift_geometry, planar_input, restore
from .names import Method, Precision, canonical_border
from .plan import Plan, make_plan, plan_key, remember, remembered
from .postprocess import Cast
from .validate import check_bias, check_input, check_kernel, check_layer_input, check_mode, check_out, check_weight

__all__ = ["Cast", "FilterResult", "conv_layer", "convolve", "correlate", "run_filter", "run_filter_cast", "run_layer"]

IntOrSeq = int | Sequence[int]


@dataclass(frozen=True)
class FilterResult:
    """A filtered array and how it was made (for the CLI's report)."""

    array: np.ndarray
    method: str
    geometry: geometry.Geometry
    anchor: tuple[float, ...]  # per axis, the kernel tap over input cell i*s of output cell i


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
    origin: geometry.OriginArg = None,
    precision: str = "auto",
    out: np.ndarray | None = None,
) -> FilterResult:
    """Correlate (or, with ``flip``, convolve) every channel of ``x`` with one kernel."""
    res, plan = _filter(x, kernel, (flip, border, padding, stride, dilation, cval, method, origin, precision), out)
    return FilterResult(res, plan.method, plan.geometry, plan.anchor)


def run_filter_cast(
    x: object,
    kernel: object,
    cast: Cast,
    *,
    flip: bool = False,
    border: str = "reflect",
    padding: geometry.PaddingArg = "same",
    stride: IntOrSeq = 1,
    dilation: IntOrSeq = 1,
    cval: float = 0.0,
    method: str = "auto",
    origin: geometry.OriginArg = None,
    precision: str = "auto",
    out: np.ndarray | None = None,
) -> tuple[FilterResult, int]:
    """:func:`run_filter`, then ``cast`` on its float result (what ``convcli apply`` does after its
    last kernel); returns the result in ``cast.dtype`` and how many values were clipped or NaN.

    The direct kernel applies the cast to each block of rows while they are in cache, so no float
    result is made (uint8 RGB 4000x3000, 5x5: 144 MB less memory); other methods filter into
    ``out`` (a float buffer of the result's shape, as in :func:`run_filter`) and cast after.
    With ``method="auto"`` the method is chosen knowing that (``tuning.CAST_PASS``), so it may
    differ from :func:`run_filter`'s for the same kernel: a 5x5 Gaussian to uint8 runs direct."""
    plan, a = _plan(x, kernel, (flip, border, padding, stride, dilation, cval, method, origin, precision), cast)
    if out is not None:
        out = check_out(out, plan.out_shape)
    fused = execute_cast(plan, a, cast)
    if fused is not None:
        res, clipped = fused
    else:
        res, clipped = cast.apply(execute(plan, a, out))
    return FilterResult(res, plan.method, plan.geometry, plan.anchor), clipped


Options = tuple[bool, str, geometry.PaddingArg, IntOrSeq, IntOrSeq, float, str, geometry.OriginArg, str]
# (flip, border, padding, stride, dilation, cval, method, origin, precision): passed as one tuple,
# which is also the remembered plan's key (a call with a dozen keywords costs a small call ~4 us)


def _plan(x: object, kernel: object, options: Options, cast: Cast | None = None) -> tuple[Plan, np.ndarray]:
    a, k = np.asarray(x), np.asarray(kernel)
    fused = cast is not None and cast.fuses(a.dtype)
    key = plan_key(a, k, (*options, fused))
    plan = None if key is None else remembered(key)
    if plan is None:
        flip, border, padding, stride, dilation, cval, method, origin, precision = options
        k = check_kernel(k)
        a, has_channels = check_input(a, k.ndim)
        plan = make_plan(
            a, has_channels, k, flip=flip, border=border, padding=padding, stride=stride, dilation=dilation,
            cval=cval, method=method, origin=origin, precision=precision, fused_cast=fused,
        )  # fmt: skip
        if key is not None:
            remember(key, plan)
    return plan, a


def _filter(x: object, kernel: object, options: Options, out: np.ndarray | None) -> tuple[np.ndarray, Plan]:
    plan, a = _plan(x, kernel, options)
    if out is not None:
        out = check_out(out, plan.out_shape)
    return execute(plan, a, out), plan


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
    origin: geometry.OriginArg = None,
    precision: Precision = "auto",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Cross-correlation (deep learning's "convolution"): ``out[i] = sum_j xpad[i*s + j*d] * k[j]``.

    ``x`` has ``kernel.ndim`` spatial axes and optionally a trailing channel axis, filtered channel
    by channel. Returns float32 (float64 for float64 input or ``precision="float64"``); values are
    never clipped.

    ``origin`` (None, an int or one int per axis) anchors the kernel as scipy.ndimage does: tap
    ``k//2 + origin`` lies over each input cell (``padding="same"`` only). None keeps the
    TensorFlow/PyTorch split for even kernels, which is ``origin=-1`` there (0 for odd kernels).
    ``out``: a float32/float64 array of the result's shape, filled and returned (the kernels
    write into it directly when its dtype is the accumulation dtype).
    """
    return _filter(x, kernel, (False, border, padding, stride, dilation, cval, method, origin, precision), out)[0]


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
    origin: geometry.OriginArg = None,
    precision: Precision = "auto",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """True convolution: ``correlate(x, flip(kernel))`` with identical padding, for any kernel size.

    ``origin`` has scipy.ndimage.convolve's meaning (for an even kernel, ``origin=0`` here is
    ``correlate(x, flip(kernel), origin=-1)``, as in scipy); ``precision`` and ``out`` as in
    :func:`correlate`.
    """
    return _filter(x, kernel, (True, border, padding, stride, dilation, cval, method, origin, precision), out)[0]


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
    w = check_weight(weight)
    check_mode(mode)
    a = check_layer_input(x, w.shape)
    cout, cin = w.shape[:2]
    kshape = w.shape[2:]
    b = check_bias(bias, cout, w.shape)
    border, zero = canonical_border(border)
    cval = 0.0 if zero else float(cval)
    geo = geometry.plan_geometry(a.shape[:-1], kshape, padding=padding, stride=stride, dilation=dilation)
    if mode == "conv":
        w = w[(slice(None), slice(None)) + (slice(None, None, -1),) * len(kshape)]
    acc = accumulation_dtype(a.dtype)
    if not tasks.compiled(tuning.layer_numpy_work(math.prod(geo.out_shape), w.shape, a.size)):
        from . import _small

        res = _small.layer(_small.pad(np.asarray(a, dtype=acc), geo, border, cval), w.astype(acc), geo)
        if b is not None:
            res += b.astype(acc)
        return FilterResult(res, "direct", geo, geo.anchor(mode == "conv"))
    xc = planar_input(a, True, acc, raw=True)
    geo3 = lift_geometry(geo)
    w5 = np.ascontiguousarray(w.reshape((cout, cin, *geo3.kernel_shape)), dtype=acc)
    out = direct3(xc, w5, geo3, border, cval, groups=1)
    if b is not None:
        out += b.astype(acc).reshape((cout, 1, 1, 1))
    return FilterResult(restore(out, geo.out_shape, True), "direct", geo, geo.anchor(mode == "conv"))


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
