"""Per-channel statistics of an (N, C) array (private Numba kernels).

Race-free: each prange iteration owns one chunk of rows and writes its own row of the partial
buffers; the caller reduces them. Two passes, so the std comes from squared deviations.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import njit
from .tuning import STATS_ROWS

ROWS = STATS_ROWS


@njit
def partials(a, counts, sums, mins, maxs, t0, t1):  # pragma: no cover - compiled
    n, C = a.shape
    for b in prange(t0, t1):
        for c in range(C):
            mins[b, c] = np.inf
            maxs[b, c] = -np.inf
        for r in range(b * ROWS, min(n, (b + 1) * ROWS)):
            for c in range(C):
                v = np.float64(a[r, c])
                if np.isfinite(v):
                    counts[b, c] += 1
                    sums[b, c] += v
                    if v < mins[b, c]:
                        mins[b, c] = v
                    if v > maxs[b, c]:
                        maxs[b, c] = v


@njit
def squares(a, means, mean_all, sq, sq_all, t0, t1):  # pragma: no cover - compiled
    n, C = a.shape
    for b in prange(t0, t1):
        for r in range(b * ROWS, min(n, (b + 1) * ROWS)):
            for c in range(C):
                v = np.float64(a[r, c])
                if np.isfinite(v):
                    d = v - means[c]
                    sq[b, c] += d * d
                    e = v - mean_all
                    sq_all[b] += e * e
