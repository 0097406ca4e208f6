"""After filtering: back to an integer image type (rint, clip, count) and per-channel statistics,
both as parallel chunked kernels. The CLI's pipeline uses these; the filter API does not."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tuning import CONVERT_CHUNK, STATS_ROWS


def to_integer(a: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, int]:
    """``rint`` then clip to an integer type's range (NaN -> 0); returns the array and how many
    values were clipped or NaN."""
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    src = np.ascontiguousarray(a)
    if src.dtype.kind != "f":
        src = src.astype(np.float64)
    from ._convert import round_clip

    out = np.empty(src.shape, dtype=dtype)
    counts = np.zeros(max(1, -(-src.size // CONVERT_CHUNK)), dtype=np.int64)
    if src.size:
        round_clip(src.reshape(-1), float(info.min), float(info.max), out.reshape(-1), counts)
    return out, int(counts.sum())


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
    (two parallel passes with per-chunk partials, reduced here)."""
    from ._stats import partials, squares

    flat = np.ascontiguousarray(a).reshape(-1, channels)
    nb = max(1, -(-flat.shape[0] // STATS_ROWS))
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
        return ChannelStats(
            count=count, min=mins.min(axis=0), max=maxs.max(axis=0), mean=means,
            std=np.sqrt(sq.sum(axis=0) / count), count_all=float(count.sum()),
            mean_all=float(mean_all), std_all=float(np.sqrt(sq_all.sum() / count.sum())),
        )  # fmt: skip
