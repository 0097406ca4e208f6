"""Border index maps: for each padded coordinate, the source index it reads (-1: the constant).

scipy.ndimage's names and meanings; padding wider than the input repeats the rule.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .names import ALIASES, BORDERS, canonical_border

__all__ = ["ALIASES", "BORDERS", "canonical_border", "index_map"]


def index_map(n: int, before: int, after: int, border: str) -> np.ndarray:
    """Source index for padded positions ``-before .. n+after-1`` (int64, -1 for constant).

    A fresh copy of a cached map: tiled work asks for the same few maps on every call, and
    building one costs more than copying it."""
    return _index_map(n, before, after, border).copy()


@lru_cache(maxsize=256)
def _index_map(n: int, before: int, after: int, border: str) -> np.ndarray:
    """The cached map, read-only (``index_map`` copies it; the numpy path reads it as it is)."""
    m = _build_map(n, before, after, border)
    m.setflags(write=False)
    return m


def _build_map(n: int, before: int, after: int, border: str) -> np.ndarray:
    q = np.arange(-before, n + after, dtype=np.int64)
    if border == "constant":
        return np.where((q >= 0) & (q < n), q, -1)
    if border == "nearest":
        return np.clip(q, 0, n - 1)
    if border == "wrap":
        return np.mod(q, n)
    if border == "reflect":  # d c b a | a b c d | d c b a
        m = np.mod(q, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    if border == "mirror":  # d c b | a b c d | c b a
        if n == 1:
            return np.zeros_like(q)
        m = np.mod(q, 2 * n - 2)
        return np.where(m < n, m, 2 * n - 2 - m)
    msg = f"border {border!r} has no index rule"
    raise ValueError(msg)
