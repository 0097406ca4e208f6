"""After filtering: back to an integer image type (rint, clip, count) and per-channel statistics.
The CLI's pipeline uses these; the filter API does not.

Large arrays go through parallel chunked Numba kernels; small ones through numpy, so that a call on
a small image loads no compiled code beyond its filter (loading each cached kernel costs start-up).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from . import buffers, tasks
from .tuning import CONVERT_CHUNK, NUMPY_POSTPROCESS_MAX, NUMPY_POSTPROCESS_MIN_COMPILED, STATS_ROWS


def _in_numpy(size: int) -> bool:
    """Small arrays go through numpy; so do medium ones (up to every numpy filter's result) while
    Numba is not loaded, so that a call that filtered in numpy never loads it. Once it is loaded,
    its one-pass kernels are faster. Both give the same integers and counts; statistics agree to
    float rounding."""
    return size < NUMPY_POSTPROCESS_MIN_COMPILED or (size < NUMPY_POSTPROCESS_MAX and "numba" not in sys.modules)


def to_integer(a: np.ndarray, dtype: np.dtype, out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """``rint`` then clip to an integer type's range (NaN -> 0); returns the array and how many
    values were clipped or NaN. ``out``: a C-contiguous array of ``a``'s size and ``dtype`` to
    fill and return instead of a new one."""
    dtype = np.dtype(dtype)
    if out is not None and not (out.flags.c_contiguous and out.size == a.size and out.dtype == dtype):
        msg = f"out must be a C-contiguous {dtype} array of {a.size} values"
        raise ValueError(msg)
    info = np.iinfo(dtype)
    src = np.ascontiguousarray(a)
    if src.dtype.kind != "f":
        src = src.astype(np.float64)
    if _in_numpy(src.size):
        # in the source's float type when it holds the integer range exactly (8/16-bit targets)
        r = np.rint(src if dtype.itemsize <= 2 else src.astype(np.float64))
        with np.errstate(invalid="ignore"):
            bad = int(np.count_nonzero(~((r >= info.min) & (r <= info.max))))  # out of range, or NaN
        np.clip(r, info.min, info.max, out=r)
        if bad:
            r[np.isnan(r)] = 0
        if out is None:
            return r.astype(dtype), bad
        np.copyto(out, r.reshape(out.shape), casting="unsafe")
        return out, bad
    from ._convert import round_clip

    out = buffers.empty(src.shape, dtype) if out is None else out
    nchunks = -(-src.size // CONVERT_CHUNK)
    counts = np.zeros(max(1, nchunks), dtype=np.int64)
    if src.size:
        # 8/16-bit bounds in the source's own type (exact there): float64 bounds made the loops
        # convert every float32 value to float64 first, at half the vector width
        bound = src.dtype.type if dtype.itemsize <= 2 else float
        tasks.run(round_clip, nchunks, src.reshape(-1), bound(info.min), bound(info.max), out.reshape(-1), counts, work=src.size)
    return out, int(counts.sum())


def rescale(x: np.ndarray, scale: float, offset: float, absolute: bool) -> None:
    """``--scale``, ``--offset``, ``--abs`` in place, in that order, in ``x``'s own float type."""
    if scale != 1.0:
        x *= x.dtype.type(scale)
    if offset:
        x += x.dtype.type(offset)
    if absolute:
        np.abs(x, out=x)


@dataclass(frozen=True)
class Cast:
    """What ``convcli apply`` does to a filter's float result: add ``pre`` (the kernel's offset),
    then :func:`rescale`, then :func:`cast` to ``dtype``. The direct kernel can do it row by row
    inside the filter with the same bits (``dispatch.execute_cast``)."""

    dtype: np.dtype
    pre: float = 0.0
    scale: float = 1.0
    offset: float = 0.0
    absolute: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype))  # Cast(np.uint8) as well

    def fuses(self, source: np.dtype) -> bool:
        """Whether the direct kernels can cast inside: to uint8 from any input, to uint16 from
        uint16 input (the integer outputs ``convcli warmup`` compiles them for)."""
        return self.dtype == np.uint8 or (self.dtype == np.uint16 and source == np.uint16)

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """On a float result, in place, then to ``dtype``: the array and its clipped count."""
        if self.pre:
            x += x.dtype.type(self.pre)
        rescale(x, self.scale, self.offset, self.absolute)
        return cast(x, self.dtype)


def cast(arr: np.ndarray, dtype: np.dtype, out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """rint and clip to an integer type (counting clipped values and NaNs); floats pass through.
    ``out`` as in :func:`to_integer` (for floats too)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        if out is None:
            return arr.astype(dtype, copy=False), 0
        np.copyto(out, arr.reshape(out.shape), casting="same_kind")
        return out, 0
    return to_integer(arr, dtype, out)


@dataclass(frozen=True)
class ChannelStats:
    """Over finite values: per channel (arrays of length C) and over all channels."""

    count: np.ndarray
    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    count_all: float
    mean_all: float
    std_all: float


def channel_stats(a: np.ndarray, channels: int) -> ChannelStats:
    """Finite-value count, min, max, mean and std per channel and overall, for channels-last data
    (8/16-bit values: exact integer moments in one pass; others: two parallel passes with
    per-chunk partials, reduced here)."""
    flat = np.ascontiguousarray(a).reshape(-1, channels)
    if flat.dtype.kind in "ui" and flat.dtype.itemsize <= 2:
        return integer_moments(flat).stats()
    if _in_numpy(flat.size):
        return _numpy_stats(flat)
    from ._stats import partials, squares

    nb = max(1, -(-flat.shape[0] // STATS_ROWS))
    counts, sums = np.zeros((nb, channels)), np.zeros((nb, channels))
    mins, maxs = np.empty((nb, channels)), np.empty((nb, channels))
    tasks.run(partials, nb, flat, counts, sums, mins, maxs, work=flat.size)
    count, total = counts.sum(axis=0), sums.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = total / count
        mean_all = total.sum() / count.sum()
    sq, sq_all = np.zeros((nb, channels)), np.zeros(nb)
    tasks.run(squares, nb, flat, np.nan_to_num(means), float(np.nan_to_num(mean_all)), sq, sq_all, work=flat.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ChannelStats(
            count=count, min=mins.min(axis=0), max=maxs.max(axis=0), mean=means,
            std=np.sqrt(sq.sum(axis=0) / count), count_all=float(count.sum()),
            mean_all=float(mean_all), std_all=float(np.sqrt(sq_all.sum() / count.sum())),
        )  # fmt: skip


def _numpy_stats(flat: np.ndarray) -> ChannelStats:
    """:func:`channel_stats` for small arrays, in numpy (float64), through reductions along
    contiguous rows of the transposed copy (numpy reduces (N, 3) along axis 0 ten times slower)."""
    v = np.ascontiguousarray(flat.T, dtype=np.float64)  # (C, N)
    finite = np.isfinite(v)
    count = finite.sum(axis=1).astype(np.float64)
    zeroed = np.where(finite, v, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = zeroed.sum(axis=1) / count
        mean_all = zeroed.sum() / count.sum()
        sq = np.where(finite, (v - np.nan_to_num(means)[:, None]) ** 2, 0.0).sum(axis=1)
        sq_all = np.where(finite, (v - float(np.nan_to_num(mean_all))) ** 2, 0.0).sum()
        return ChannelStats(
            count=count, min=np.where(finite, v, np.inf).min(axis=1), max=np.where(finite, v, -np.inf).max(axis=1),
            mean=means, std=np.sqrt(sq / count), count_all=float(count.sum()), mean_all=float(mean_all),
            std_all=float(np.sqrt(sq_all / count.sum())),
        )  # fmt: skip


def value_counts(flat: np.ndarray) -> tuple[np.ndarray, int]:
    """8/16-bit channels-last values ``(N, C)``: how often each value occurs per channel, ``(C, K)``
    with K = 256 or 65536, and the value of column 0 (the type's minimum)."""
    info = np.iinfo(flat.dtype)
    k = 1 << (8 * flat.dtype.itemsize)
    channels = flat.shape[1]
    index = flat.astype(np.int32) - info.min + np.arange(channels, dtype=np.int32) * k
    return np.bincount(index.ravel(), minlength=channels * k).reshape(channels, k), int(info.min)


@dataclass(frozen=True)
class IntMoments:
    """Exact per-channel moments of 8/16-bit values, in Python integers (no float rounding)."""

    count: int  # values per channel
    sums: tuple[int, ...]
    squares: tuple[int, ...]
    mins: tuple[int, ...]
    maxs: tuple[int, ...]

    def m2(self) -> np.ndarray:
        """Per channel: the sum of squared deviations from the mean, from exact integers."""
        n = self.count
        return np.array([(n * q - s * s) / n if n else 0.0 for s, q in zip(self.sums, self.squares, strict=True)])

    def stats(self) -> ChannelStats:
        n, c = self.count, len(self.sums)
        count = np.full(c, float(n))
        if n == 0:
            nan = np.full(c, np.nan)
            return ChannelStats(count, np.full(c, np.inf), np.full(c, -np.inf), nan, nan, 0.0, np.nan, np.nan)
        total, squares = sum(self.sums), sum(self.squares)
        m2_all = (n * c * squares - total * total) / (n * c)
        return ChannelStats(
            count=count, min=np.array(self.mins, dtype=np.float64), max=np.array(self.maxs, dtype=np.float64),
            mean=np.array([s / n for s in self.sums]), std=np.sqrt(self.m2() / n), count_all=float(n * c),
            mean_all=total / (n * c), std_all=float(np.sqrt(max(m2_all, 0.0) / (n * c))),
        )  # fmt: skip


def integer_moments(flat: np.ndarray) -> IntMoments:
    """:class:`IntMoments` of channels-last 8/16-bit values ``(N, C)``: one ``bincount`` for small
    arrays, one pass of a parallel int64 kernel for large ones."""
    n, channels = flat.shape
    if n == 0:
        return IntMoments(0, (0,) * channels, (0,) * channels, (0,) * channels, (0,) * channels)
    if _in_numpy(flat.size):
        counts, lo = value_counts(flat)
        values = np.arange(counts.shape[1], dtype=np.int64) + lo
        seen = counts > 0
        first, last = seen.argmax(axis=1), counts.shape[1] - 1 - seen[:, ::-1].argmax(axis=1)
        return IntMoments(
            n, tuple(int(v) for v in counts @ values), tuple(int(v) for v in counts @ (values * values)),
            tuple(int(v) for v in values[first]), tuple(int(v) for v in values[last]),
        )  # fmt: skip
    from ._stats import int_moments

    nb = -(-n // STATS_ROWS)
    sums, sqs = np.zeros((nb, channels), dtype=np.int64), np.zeros((nb, channels), dtype=np.int64)
    mins, maxs = np.empty((nb, channels), dtype=np.int64), np.empty((nb, channels), dtype=np.int64)
    tasks.run(int_moments, nb, np.ascontiguousarray(flat).reshape(-1), channels, sums, sqs, mins, maxs, work=flat.size)
    # summed as Python integers: 2**31 squares of 16-bit values overflow int64
    return IntMoments(
        n, tuple(int(v) for v in sums.astype(object).sum(axis=0)), tuple(int(v) for v in sqs.astype(object).sum(axis=0)),
        tuple(int(v) for v in mins.min(axis=0)), tuple(int(v) for v in maxs.max(axis=0)),
    )  # fmt: skip
