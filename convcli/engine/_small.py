"""Small calls in plain numpy: no Numba to import, load or compile (private; no validation).

A call below ``tuning.NUMPY_MAX_MACS`` multiply-adds costs numpy a few milliseconds, while the
compiled kernels cost a process 0.5-1 s to import and load from the cache, and 15-30 s to
compile on a first run. The padded input is built once from the engine's border index maps (so
every border, padding, stride and dilation means exactly what it means to the kernels); each tap
then adds one strided view of it, scaled, to the accumulator. Arrays are channels-last
``(*spatial, C)`` in the accumulation dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np

from .. import geometry
from ._borders import index_map


def pad(x: np.ndarray, geo: geometry.Geometry, border: str, cval: float) -> np.ndarray:
    """``x (*spatial, C)`` padded on every spatial axis by the border rule (``-1`` reads ``cval``)."""
    for axis, (n, (before, after)) in enumerate(zip(geo.in_shape, geo.padding, strict=True)):
        if before == 0 and after == 0:
            continue
        m = index_map(n, before, after, border)
        if np.any(m < 0):  # one constant cell after the data; -1 reads it
            widths = [(0, 0)] * x.ndim
            widths[axis] = (0, 1)
            x = np.pad(x, widths, constant_values=x.dtype.type(cval))
            m[m < 0] = n
        x = np.take(x, m, axis=axis)
    return x


def _view(xp: np.ndarray, tap: Sequence[int], geo: geometry.Geometry) -> np.ndarray:
    """The cells of the padded input that tap ``tap`` reads for every output cell."""
    return xp[
        tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, s, o in zip(tap, geo.dilation, geo.stride, geo.out_shape, strict=True)
        )
    ]


def direct(xp: np.ndarray, k: np.ndarray, geo: geometry.Geometry) -> np.ndarray:
    """``sum over taps of k[tap] * view(tap)``: correlation of the padded ``xp`` with ``k``."""
    acc = xp.dtype.type
    out = np.empty((*geo.out_shape, xp.shape[-1]), dtype=xp.dtype)
    tmp = np.empty_like(out)
    # per axis, the slice each kernel index reads (built once: small calls are mostly Python)
    per_axis = [
        [slice(t * d, t * d + (o - 1) * s + 1, s) for t in range(n)]
        for n, d, s, o in zip(k.shape, geo.dilation, geo.stride, geo.out_shape, strict=True)
    ]
    weights = [acc(w) for w in k.ravel().tolist()]
    with np.errstate(invalid="ignore", over="ignore"):  # Inf*0 is NaN, as in the compiled kernels, silently
        for i, (w, where) in enumerate(zip(weights, product(*per_axis))):
            if i == 0:
                np.multiply(xp[where], w, out=out)
            else:
                np.multiply(xp[where], w, out=tmp)
                np.add(out, tmp, out=out)
    return out


def separable(xp: np.ndarray, terms: Sequence[Sequence[np.ndarray]], geo: geometry.Geometry) -> np.ndarray:
    """The sum over rank-1 terms of 1-D passes, one spatial axis after the other."""
    total: np.ndarray | None = None
    for term in terms:
        r = xp
        for axis, f in enumerate(term):
            shape = [1] * len(geo.out_shape)
            shape[axis] = f.size
            one = geometry.Geometry(
                r.shape[:-1], tuple(shape), _only(geo.stride, axis), _only(geo.dilation, axis),
                tuple((0, 0) for _ in shape), (*r.shape[:axis], geo.out_shape[axis], *r.shape[axis + 1 : -1]),
            )  # fmt: skip
            r = direct(r, f.reshape(shape), one)
        total = r if total is None else np.add(total, r, out=total)
    assert total is not None
    return total


def _only(values: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return tuple(v if i == axis else 1 for i, v in enumerate(values))


def layer(xp: np.ndarray, w: np.ndarray, geo: geometry.Geometry) -> np.ndarray:
    """``out[..., o] = sum over taps and c of w[o, c, tap] * view(tap)[..., c]``."""
    out = np.zeros((*geo.out_shape, w.shape[0]), dtype=xp.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        for tap in product(*(range(n) for n in w.shape[2:])):
            out += _view(xp, tap, geo) @ np.ascontiguousarray(w[(slice(None), slice(None)) + tuple(tap)].T)
    return out
