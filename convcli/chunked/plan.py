"""What every block needs, decided once for the whole array: the geometry, the method, and the
grid of output blocks.

Exactness comes from here: each output block reads exactly the padded input cells the in-memory
engine would read for it (the engine's own geometry and border index maps, per side, over the
whole array), and every block runs the same method, chosen once from the whole array's cost.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import geometry
from ..errors import ArgumentError, UsageError
from . import source as _source
from .source import SPATIAL, Source, grouped


@dataclass(frozen=True)
class Op:
    """One filter over the whole array (kernel lifted to the input's spatial axes)."""

    kernel: np.ndarray  # (*k) for a filter, (Cout, Cin, *k) for a bank
    bias: np.ndarray | None
    bank: bool
    flip: bool  # true convolution
    border: str  # canonical name
    cval: float
    geometry: geometry.Geometry  # spatial axes of the whole array
    method: str  # never "auto"
    compiled: bool = True  # the engine's Numba kernels, else numpy: chosen once by the whole array's size
    precision: str = "auto"  # the engine's accumulation: "auto" or "float64"

    @property
    def out_channels(self) -> int | None:
        return int(self.kernel.shape[0]) if self.bank else None


def _lift(value: Any, n_spatial: int, n_kernel: int, fill: Any, name: str) -> Any:
    """Per-axis options given for the kernel's axes, lifted with ``fill`` for extra leading axes."""
    if isinstance(value, str):
        return value
    values = geometry.axis_values(tuple(value) if isinstance(value, (list, tuple)) else (value,), n_kernel, name)
    return geometry.lift(values, n_spatial, fill)


def resolve_method(method: str, geo: geometry.Geometry, kernel: np.ndarray) -> str:
    """The engine's own ``auto`` choice, made once from the whole array's geometry (a per-block
    choice could mix methods and break bit-exactness)."""
    from ..engine._factor import separable_terms
    from ..engine.calibration import auto_method
    from ..engine.names import check_method

    check_method(method)
    terms = separable_terms(kernel) if method in ("auto", "separable") else None
    if method == "separable" and terms is None:
        msg = f"method='separable' needs a separable (low-rank) kernel; this {kernel.shape} kernel is not"
        raise ArgumentError(msg)
    if method != "auto":
        return method
    return auto_method(geo, len(terms) if terms else 0)


def plan_op(
    source: Source,
    kernel: np.ndarray,
    *,
    bias: np.ndarray | None = None,
    bank: bool = False,
    mode: str = "corr",
    border: str = "reflect",
    padding: Any = "same",
    stride: Any = 1,
    dilation: Any = 1,
    cval: float = 0.0,
    method: str = "auto",
    origin: Any = None,
    precision: str = "auto",
) -> Op:
    """Validate and plan one filter (or a ``(Cout, Cin, *k)`` bank with ``bank``) on ``source``;
    ``origin`` and ``precision`` as in :func:`convcli.correlate` (filters only, not banks)."""
    from ..engine.names import canonical_border, check_precision

    k = np.asarray(kernel, dtype=np.float64)
    if k.size == 0 or not np.all(np.isfinite(k)):
        msg = f"kernel of shape {k.shape} is empty or holds NaN/Inf"
        raise ArgumentError(msg)
    if mode not in ("corr", "conv"):
        msg = f"mode={mode!r} is not 'corr' or 'conv'"
        raise ArgumentError(msg)
    spatial_k = k.shape[2:] if bank else k.shape
    n_spatial = len(source.spatial_shape)
    if len(spatial_k) > n_spatial:
        msg = f"the kernel is {len(spatial_k)}-D but the input has {n_spatial} spatial axes (roles {source.roles})"
        raise ArgumentError(msg)
    lifted = (1,) * (n_spatial - len(spatial_k)) + tuple(spatial_k)
    k = k.reshape((*k.shape[:2], *lifted) if bank else lifted)
    if bank and k.shape[1] != source.channels:
        msg = f"filter bank expects Cin = {k.shape[1]} channels but the input has {source.channels}"
        raise ArgumentError(msg)
    check_precision(precision)
    if bank and (origin is not None or precision != "auto"):
        msg = "origin and precision apply to single kernels, not to a filter bank"
        raise ArgumentError(msg)
    name, zero = canonical_border(border)
    geo = geometry.plan_geometry(
        source.spatial_shape, lifted,
        padding=_lift(padding, n_spatial, len(spatial_k), (0, 0), "padding"),
        stride=_lift(stride, n_spatial, len(spatial_k), 1, "stride"),
        dilation=_lift(dilation, n_spatial, len(spatial_k), 1, "dilation"),
        origin=None if origin is None else _lift(origin, n_spatial, len(spatial_k), 0, "origin"),
        flip=mode == "conv",
    )  # fmt: skip
    chosen = "direct" if bank else resolve_method(method, geo, k)
    b = None if bias is None else np.asarray(bias, dtype=np.float64)
    from ..engine.layout import accumulation_dtype

    itemsize = accumulation_dtype(source.dtype, precision).itemsize  # as the engine plans it
    compiled = _compiled(source, geo, k, bank, chosen, itemsize)
    if method == "auto" and not (compiled or bank):
        from ..engine._factor import cached_terms
        from ..engine.tuning import numpy_method

        chosen = numpy_method(geo, chosen, cached_terms(k), source.batch * source.channels, math.prod(source.shape), itemsize=itemsize)
    return Op(k, b, bank, mode == "conv", name, 0.0 if zero else float(cval), geo, chosen, compiled, precision)


def _compiled(source: Source, geo: geometry.Geometry, k: np.ndarray, bank: bool, method: str, itemsize: int) -> bool:
    """The engine's backend for the whole array (a per-block choice would round small blocks
    differently from large ones)."""
    from ..engine import tasks, tuning
    from ..engine._factor import cached_terms

    if method == "fft":
        return True
    values = math.prod(source.shape)
    if bank:
        return tasks.compiled(tuning.layer_numpy_work(source.batch * math.prod(geo.out_shape), k.shape, values))
    terms = cached_terms(k) if method == "separable" else None
    return tasks.compiled(tuning.numpy_work(geo, method, terms, source.batch * source.channels, values, itemsize))


@dataclass(frozen=True)
class Grid:
    """The output array and its blocks: each block is a union of whole output chunks, so
    concurrent writers never share a chunk."""

    roles: str  # the output's axis roles (a bank adds a trailing "C" to an input without one)
    shape: tuple[int, ...]
    chunks: tuple[int, ...]  # the stored chunking
    block: tuple[int, ...]  # the compute block, a multiple of ``chunks``

    def blocks(self) -> Iterator[tuple[tuple[int, int], ...]]:
        ranges = [[(s, min(s + b, n)) for s in range(0, n, b)] for n, b in zip(self.shape, self.block, strict=True)]
        return itertools.product(*ranges)

    @property
    def count(self) -> int:
        return math.prod(-(-n // b) for n, b in zip(self.shape, self.block, strict=True))


def plan_grid(source: Source, op: Op, chunks: Sequence[int] | None = None) -> Grid:
    """Output shape, chunks (``chunks`` for the spatial axes, else the input's) and blocks.

    With ``direct``, a block keeps whole rows: the engine picks its tap order by row width, so a
    narrower block would round differently from the in-memory result.
    """
    roles = source.roles if not (op.bank and "C" not in source.roles) else source.roles + "C"
    out_spatial = iter(op.geometry.out_shape)
    in_chunks = dict(zip(range(len(source.shape)), source.chunks, strict=True))
    want = iter(chunks) if chunks is not None else None
    n_spatial = sum(r in SPATIAL for r in roles)
    if chunks is not None and len(chunks) != n_spatial:
        msg = f"--chunks gives {len(chunks)} sizes for {n_spatial} spatial axes"
        raise UsageError(msg, "--chunks")
    shape, out_chunks = [], []
    for i, r in enumerate(roles):
        if r in SPATIAL:
            n = next(out_spatial)
            c = next(want) if want is not None else in_chunks[i]
            if c < 1:
                msg = f"--chunks sizes must be >= 1, got {c}"
                raise UsageError(msg, "--chunks")
            shape.append(n)
            out_chunks.append(min(c, n))
        elif r == "C":
            n = op.out_channels or source.channels
            shape.append(n)
            out_chunks.append(n)
        else:
            shape.append(source.shape[i])
            out_chunks.append(1)
    block = list(out_chunks)
    if op.method == "direct":
        x = max(i for i, r in enumerate(roles) if r in SPATIAL)  # the engine's rows
        block[x] = shape[x]
    if op.method == "separable":
        # blocks at least eight halos deep along the slab axis: the first 1-D pass filters every
        # halo plane of a block again (one chunk deep cost 1.3x the in-memory time for a 17^3 Gaussian)
        z = roles.index(next(r for r in roles if r in SPATIAL))
        halo = op.geometry.dilation[0] * (op.geometry.kernel_shape[0] - 1) * op.geometry.stride[0]
        block[z] = min(shape[z], out_chunks[z] * max(1, -(-8 * halo // (out_chunks[z] * op.geometry.stride[0]))))
    # small chunks are computed in groups (source.GROUP_VALUES), leaving a small array about eight
    # blocks for the workers
    axes = [i for i, r in enumerate(roles) if r in SPATIAL]
    values = math.prod(shape[i] for i in axes)
    spatial = grouped([block[i] for i in axes], [shape[i] for i in axes], max(1, min(_source.GROUP_VALUES, values // 8)))
    for i, b in zip(axes, spatial, strict=True):
        block[i] = b
    return Grid(roles, tuple(shape), tuple(out_chunks), tuple(block))


@functools.lru_cache(maxsize=32)
def index_map(n: int, before: int, after: int, border: str) -> np.ndarray:
    """The engine's border index map for one whole axis (cached: every block of an axis shares it)."""
    from ..engine._borders import index_map as engine_map

    return engine_map(n, before, after, border)


def padded_span(o0: int, o1: int, k: int, s: int, d: int) -> tuple[int, int]:
    """Padded input positions ``[p0, p1)`` read by output cells ``o0 .. o1-1`` of one axis."""
    return o0 * s, (o1 - 1) * s + d * (k - 1) + 1
