"""The plan of one filtering call: everything decided before a kernel runs, in one value that
nothing changes once made.

Validation has happened; the plan holds the geometry (the caller's axes and lifted to three), the
kernel as slid (flipped for convolution), the method, the border, the accumulation dtype and the
layout (channels interleaved or planar, whole or band by band). Dispatch reads only the plan.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .. import geometry
from ..errors import ArgumentError
from ..geometry import Geometry
from . import tasks, tuning
from ._factor import MAX_LOW_RANK, cached_terms
from .calibration import auto_choice
from .layout import accumulation_dtype, lift_geometry
from .names import canonical_border, check_method, check_precision

Terms = tuple[tuple[np.ndarray, ...], ...]
PLANS_KEPT = 256  # plans remembered per process (a tiled or patch loop repeats a few) ...
PLAN_KERNEL_MAX = 1024  # ... with kernels of at most this many values (a key holds the kernel's bytes
# and a plan two float copies: 256 plans stay under 5 MB; a bigger kernel's call is never small)
_SCALARS = frozenset((str, int, float, bool, type(None)))


@dataclass(eq=False, slots=True)  # not frozen: a frozen init costs 3 us, paid on every small call
class Plan:
    geometry: Geometry  # on the caller's spatial axes
    flip: bool  # convolution: the kernel as given was flipped before sliding
    geo3: Geometry  # the same pass lifted to (Z, Y, X)
    kernel3: np.ndarray  # (KD, KH, KW) float64, as slid (already flipped for convolution)
    terms: Terms | None  # rank-1 terms (each a tuple of 1-D factors) where separable is possible
    method: str  # direct | separable | fft
    border: str  # canonical name
    cval: float
    acc: np.dtype  # accumulation dtype
    channels: int
    has_channels: bool
    interleaved: bool  # channels-last data walked as one (1, Z, H, W*C) channel: no transposes
    banded: bool  # an 8/16-bit 2-D image converted to float band by band
    compiled: bool  # run by the Numba kernels; False: by numpy (a small call, see tasks.compiled)
    calibrated: bool = False  # auto's method came from this machine's measurement (not remembered)
    # what dispatch derives from the plan for its repeated calls (direct jobs by input layout, the
    # numpy path's flat form): it lives and dies with the plan, so only remembered plans keep it
    derived: dict[Any, Any] = field(default_factory=dict)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The caller's result shape."""
        return (*self.geometry.out_shape, self.channels) if self.has_channels else self.geometry.out_shape

    @property
    def anchor(self) -> tuple[float, ...]:
        """The tap of the caller's kernel over input cell ``i*s`` of output cell ``i``, per axis."""
        return self.geometry.anchor(self.flip)


def make_plan(
    a: np.ndarray,
    has_channels: bool,
    kernel: np.ndarray,
    *,
    flip: bool,
    border: str,
    padding: geometry.PaddingArg,
    stride: int | Sequence[int],
    dilation: int | Sequence[int],
    cval: float,
    method: str,
    origin: geometry.OriginArg = None,
    precision: str = "auto",
    fused_cast: bool = False,
) -> Plan:
    """Plan correlating (``flip``: convolving) every channel of the checked input ``a`` with ``kernel``;
    ``fused_cast``: the result is cast to 8/16 bits, which the direct kernel does inside (``auto``)."""
    check_method(method)
    check_precision(precision)
    border, zero = canonical_border(border)
    spatial = a.shape[:-1] if has_channels else a.shape
    if isinstance(origin, np.ndarray):  # scipy takes arrays too
        origin = origin.tolist()
    geo, geo3 = geometries(spatial, kernel.shape, padding=padding, stride=stride, dilation=dilation, origin=origin, flip=flip)
    k = np.ascontiguousarray(kernel[(slice(None, None, -1),) * kernel.ndim]) if flip else kernel
    terms = cached_terms(k) if method in ("auto", "separable") else None
    if method == "separable" and terms is None:
        msg = (
            f"method='separable' needs a kernel that is a sum of at most {MAX_LOW_RANK} separable terms "
            f"(rank-1 for 3-D); this {k.shape} kernel is not"
        )
        raise ArgumentError(msg)
    channels = a.shape[-1] if has_channels else 1
    # direct casts inside for one channel or interleaved ones (x stride 1; see dispatch.execute_cast)
    fused_cast = fused_cast and (channels == 1 or geo3.stride[2] == 1)
    calibrated = False
    if method == "auto":
        chosen, calibrated = auto_choice(geo, len(terms) if terms else 0, fused_cast=fused_cast)
    else:
        chosen = method
    acc = accumulation_dtype(a.dtype, precision)
    interleaved = has_channels and channels > 1 and geo3.stride[2] == 1 and chosen != "fft"
    work = 0 if chosen == "fft" else tuning.numpy_work(geo, chosen, terms, channels, a.size, acc.itemsize)
    compiled = chosen == "fft" or tasks.compiled(work)
    if method == "auto" and not compiled:
        chosen = tuning.numpy_method(geo, chosen, terms, channels, a.size, work, acc.itemsize)
    big = a.dtype != acc and a.nbytes * acc.itemsize >= tuning.BAND_MIN_BYTES * a.itemsize
    banded = compiled and big and chosen == "separable" and k.ndim == 2 and (interleaved or channels == 1)
    kernel3 = k.reshape(geo3.kernel_shape)
    kernel3.flags.writeable = False  # plans are remembered and shared (plan_key)
    return Plan(
        geometry=geo, flip=flip, geo3=geo3, kernel3=kernel3, terms=terms, method=chosen,
        border=border, cval=0.0 if zero else float(cval), acc=acc, channels=channels,
        has_channels=has_channels, interleaved=interleaved, banded=banded, compiled=compiled, calibrated=calibrated,
    )  # fmt: skip


def geometries(
    spatial: tuple[int, ...],
    kshape: tuple[int, ...],
    *,
    padding: geometry.PaddingArg,
    stride: int | Sequence[int],
    dilation: int | Sequence[int],
    origin: geometry.OriginArg,
    flip: bool,
) -> tuple[Geometry, Geometry]:
    """The pass's geometry on the caller's axes and lifted to three; cached for hashable
    arguments (tiled work repeats one geometry, and building it costs ~10 us of Python)."""
    options = (padding, stride, dilation, origin, flip)
    try:
        key = _typed_key(options)
    except TypeError:  # lists, arrays: no caching
        return _geometries(spatial, kshape, options)
    return _cached_geometries(key, spatial, kshape, options)


def _typed_key(value: Any) -> Any:
    """``value`` with each scalar tagged by its type, so 1, 1.0 and True stay apart (the checks
    accept only the first); raises TypeError for an unhashable value."""
    if isinstance(value, tuple):
        return tuple(_typed_key(v) for v in value)
    hash(value)
    return (type(value), value)


@lru_cache(maxsize=256)
def _cached_geometries(key: Any, *args: Any) -> tuple[Geometry, Geometry]:
    """(``key`` keeps equal values of other types apart; the arguments themselves are hashable.)"""
    return _geometries(*args)


def _geometries(spatial: tuple[int, ...], kshape: tuple[int, ...], options: tuple[Any, ...]) -> tuple[Geometry, Geometry]:
    padding, stride, dilation, origin, flip = options
    geo = geometry.plan_geometry(spatial, kshape, padding=padding, stride=stride, dilation=dilation, origin=origin, flip=flip)
    return geo, lift_geometry(geo)


# --- plans remembered: a repeated call skips validation and planning -------------------------------
# Planning a small call costs more Python than filtering it (64x64 3x3: 56 us against 45 of numpy
# on a Zen 1). A plan depends only on the input's shape and dtype, the kernel's values, the
# options and this thread's back end, which make the key, and on the tuning numbers and, for a
# calibrated choice, on the machine's measurement: such a plan is never remembered. Only plans of
# valid calls are stored, so an invalid call is checked (and refused) every time.
_plans: dict[Any, Plan] = {}  # oldest first
_plans_lock = threading.Lock()


def plan_key(a: np.ndarray, kernel: np.ndarray, options: tuple[Any, ...]) -> Any:
    """What a plan of ``a`` (its shape and dtype) filtered by ``kernel`` (its values) with the call's
    ``options`` depends on; None when an option cannot be a key (a list, an array)."""
    if kernel.dtype.kind not in "iuf" or kernel.size > PLAN_KERNEL_MAX:  # (refused by validation / too big to keep)
        return None
    types = tuple(map(type, options))
    try:  # 1, 1.0 and True stay apart, also inside tuples
        opts = (options, types) if _SCALARS.issuperset(types) else _typed_key(options)
        hash(opts)
    except TypeError:
        return None
    return (a.shape, a.dtype, kernel.shape, kernel.dtype, kernel.tobytes(), opts, tasks.backend_choice())


def remembered(key: Any) -> Plan | None:
    return _plans.get(key)


def remember(key: Any, plan: Plan) -> None:
    if plan.calibrated:
        return
    with _plans_lock:  # (reads take no lock: a dict read is atomic)
        while len(_plans) >= PLANS_KEPT:
            del _plans[next(iter(_plans))]
        _plans[key] = plan


def forget() -> None:
    """Drop the remembered plans, and with them what dispatch keeps per plan (tests that change
    tuning or the environment between calls)."""
    with _plans_lock:
        _plans.clear()
