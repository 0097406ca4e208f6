"""Small calls in plain numpy: no Numba to import, load or compile (private; no validation).

A call below ``tuning.NUMPY_MAX_MACS`` multiply-adds costs numpy a few milliseconds, while the
compiled kernels cost a process 0.5-1 s to import and load from the cache, and 15-30 s to
compile on a first run. The padded input is built once from the engine's border index maps (so
every border, padding, stride and dilation means exactly what it means to the kernels); each tap
then adds its view of it, scaled, to the accumulator: at unit stride a flat slice, and for a
small call all taps in two numpy calls, since a small call's cost is mostly Python. Arrays are
channels-last ``(*spatial, C)`` in the accumulation dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import numpy as np

from .. import geometry
from . import tuning
from ._borders import _index_map

PAD_TAKE_MAX = 1 << 15  # values: smaller inputs are padded by one take of a cached index (see pad)


def pad(x: np.ndarray, geo: geometry.Geometry, border: str, cval: float) -> np.ndarray:
    """``x (*spatial, C)`` padded on every spatial axis by the border rule (``-1`` reads ``cval``),
    C-contiguous. Small calls are mostly Python: one ``take`` of the flat input by a cached index
    of every padded cell (64x64: 7 us, against 10 for a take per axis on a Zen 1)."""
    if border != "constant":
        index = _pad_index(x.shape, geo.padding, border) if x.size < PAD_TAKE_MAX else None
        return _pad_edges(x, geo, border) if index is None else x.reshape(-1).take(index)
    # constant: the input lands whole in one box (padding is never negative); the rest is cval
    xp = np.full((*(n + b + a for n, (b, a) in zip(geo.in_shape, geo.padding, strict=True)), x.shape[-1]), cval, dtype=x.dtype)
    xp[_interior(geo)] = x
    return xp


@lru_cache(maxsize=16)  # (up to 1 MiB each)
def _pad_index(shape: tuple[int, ...], padding: tuple[tuple[int, int], ...], border: str) -> np.ndarray | None:
    """Where each cell of the padded ``(*spatial, C)`` array reads the flat input (read-only);
    None when the padding makes it over 4 * PAD_TAKE_MAX cells (a wide kernel on a small input)."""
    if math.prod(n + b + a for n, (b, a) in zip(shape, (*padding, (0, 0)), strict=True)) > 4 * PAD_TAKE_MAX:
        return None
    maps = [_index_map(n, b, a, border) for n, (b, a) in zip(shape[:-1], padding, strict=True)]
    index = np.ravel_multi_index(np.ix_(*maps, np.arange(shape[-1])), shape)
    index.setflags(write=False)
    return index


def _interior(geo: geometry.Geometry) -> tuple[slice, ...]:
    """Where the input lies in the padded array (padding is never negative)."""
    return tuple(slice(b, b + n) for n, (b, _) in zip(geo.in_shape, geo.padding, strict=True))


def _pad_edges(x: np.ndarray, geo: geometry.Geometry, border: str) -> np.ndarray:
    """:func:`pad` for larger arrays: the interior copied once, then the edges axis by axis from
    what is already padded (the border rule applies per axis, so corners come out right)."""
    maps = [_index_map(n, b, a, border) for n, (b, a) in zip(geo.in_shape, geo.padding, strict=True)]
    box = _interior(geo)
    xp = np.empty((*(m.size for m in maps), x.shape[-1]), dtype=x.dtype)
    xp[box] = x
    for axis, (m, d) in enumerate(zip(maps, box, strict=True)):
        inner = box[axis + 1 :]  # axes after this one: still only the interior
        for edge in (slice(0, d.start), slice(d.stop, m.size)):
            if edge.stop > edge.start:
                lead = (slice(None),) * axis
                xp[lead + (edge,) + inner] = xp[lead + (m[edge] + d.start,) + inner]  # (take would copy all of xp)
    return xp


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
    xp = np.ascontiguousarray(xp)
    form = flat_form(xp.shape, xp.dtype, k, geo)
    return _direct_strided(xp, k, geo) if form is None else run_flat(xp, form)


@dataclass(frozen=True, eq=False, slots=True)
class Flat:
    """A unit-stride direct pass on one padded shape with one kernel, in its flat form: tap t reads
    the flat padded array from offset(t) on, so the output is computed on the padded grid (its
    row pitch) as 1-D slices and cropped once. Every form adds each cell's products in the same
    order, so all give the same bits (add.reduce along axis 0 of a C-contiguous array adds row
    after row; tests check the forms against each other). Made once per plan (dispatch)."""

    weights: np.ndarray  # the kernel in the accumulation dtype, (*k, 1)
    length: int  # flat cells computed
    steps: tuple[int, ...]  # flat step between neighbouring taps per kernel axis
    grid: tuple[int, ...]  # the padded grid holding the output ...
    crop: tuple[slice, ...]  # ... and the output in it
    at_once: bool  # every tap's products at once (two numpy calls), else tap by tap in blocks


def flat_form(pshape: tuple[int, ...], dtype: np.dtype, k: np.ndarray, geo: geometry.Geometry) -> Flat | None:
    """The flat form of correlating a padded ``(*spatial, C)`` array of ``pshape`` with ``k``; None
    for a stride, or a kernel so wide that the padded grid is many times the output's work."""
    if geo.stride.count(1) != len(geo.stride):
        return None
    length, steps, grid, crop = _flat_taps(pshape, geo.dilation, geo.out_shape)
    if not length:
        return None
    at_once = length * (k.size + 1) * dtype.itemsize <= tuning.numpy_products_bytes()
    return Flat(k.astype(dtype).reshape((*k.shape, 1)), length, steps, grid, crop, at_once)


def run_flat(xp: np.ndarray, form: Flat) -> np.ndarray:
    """:func:`direct` on a C-contiguous padded ``xp`` in its flat form."""
    full = np.empty(math.prod(form.grid), dtype=xp.dtype)
    flat, isz, w = xp.reshape(-1), xp.itemsize, form.weights
    with np.errstate(invalid="ignore", over="ignore"):  # Inf*0 is NaN, as in the compiled kernels, silently
        if form.at_once:
            # a view only read; the constructor checks its strides against the buffer's end
            view = np.ndarray((*w.shape[:-1], form.length), xp.dtype, flat, 0, (*(st * isz for st in form.steps), isz))
            products = np.multiply(view, w)
            np.add.reduce(products.reshape((-1, form.length)), axis=0, out=full[: form.length])
        else:
            _accumulate(flat, w[..., 0], form.steps, form.length, full, tuning.numpy_block_bytes())
    return np.ascontiguousarray(full.reshape(form.grid)[form.crop])


def _accumulate(flat: np.ndarray, k: np.ndarray, steps: tuple[int, ...], length: int, full: np.ndarray, budget: int) -> None:
    """``full[:length]`` tap by tap, in blocks of about ``budget`` bytes that stay in cache."""
    offsets = [sum(t * st for t, st in zip(tap, steps, strict=True)) for tap in product(*(range(n) for n in k.shape))]
    weights = [flat.dtype.type(w) for w in k.ravel().tolist()]
    block = min(length, max(1024, budget // (2 * flat.itemsize)))
    tmp = np.empty(block, dtype=flat.dtype)
    for start in range(0, length, block):
        n = min(block, length - start)
        out, part = full[start : start + n], tmp[:n]
        np.multiply(flat[start + offsets[0] : start + offsets[0] + n], weights[0], out=out)
        for w, off in zip(weights[1:], offsets[1:], strict=True):
            np.multiply(flat[start + off : start + off + n], w, out=part)
            np.add(out, part, out=out)


@lru_cache(maxsize=256)
def _flat_taps(
    pshape: tuple[int, ...], dilation: tuple[int, ...], out_shape: tuple[int, ...]
) -> tuple[int, tuple[int, ...], tuple[int, ...], tuple[slice, ...]]:
    """For the padded ``(*spatial, C)`` shape: how many flat cells the output spans on the padded
    grid (0 where that is not worth it: see tuning.flat_span), the flat step between neighbouring
    taps per kernel axis, the grid holding the output and the crop out of it."""
    C = pshape[-1]
    if tuning.flat_span(out_shape, pshape[:-1]) is None:
        return 0, (), (), ()
    steps = [C * math.prod(pshape[a + 1 : -1]) for a in range(len(pshape) - 1)]
    length = sum((o - 1) * st for o, st in zip(out_shape, steps, strict=True)) + C
    tap_steps = tuple(d * st for d, st in zip(dilation, steps, strict=True))
    crop = (slice(None), *(slice(0, o) for o in out_shape[1:]))
    return length, tap_steps, (out_shape[0], *pshape[1:]), crop


def _direct_strided(xp: np.ndarray, k: np.ndarray, geo: geometry.Geometry) -> np.ndarray:
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
