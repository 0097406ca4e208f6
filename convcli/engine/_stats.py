"""Per-channel statistics of an (N, C) array (private Numba kernels).

Race-free: each prange iteration owns one chunk of rows and writes its own row of the partial
buffers; the caller reduces them. Two passes, so the std comes from squared deviations.
"""

from __future__ import annotations

import numpy as np

from ._jit import njit, prange
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


@njit
def int_moments(flat, C, sums, sqs, mins, maxs, t0, t1):  # pragma: no cover - compiled
    """Exact per-channel sums, sums of squares, min and max of 8/16-bit channels-last values
    (``flat`` holds rows of C values), in int64: a chunk of ROWS rows of 16-bit squares stays
    below 2**48. One pass; a single channel runs as one contiguous loop (vectorised)."""
    n = flat.shape[0] // C
    for b in prange(t0, t1):
        r0 = b * ROWS
        r1 = min(n, r0 + ROWS)
        if C == 1:
            s = flat[r0:r1]
            tot = np.int64(0)
            sq = np.int64(0)
            lo = np.int64(s[0])
            hi = lo
            for i in range(s.shape[0]):
                v = np.int64(s[i])
                tot += v
                sq += v * v
                lo = min(lo, v)
                hi = max(hi, v)
            sums[b, 0] = tot
            sqs[b, 0] = sq
            mins[b, 0] = lo
            maxs[b, 0] = hi
            continue
        for c in range(C):
            v = np.int64(flat[r0 * C + c])
            mins[b, c] = v
            maxs[b, c] = v
        for r in range(r0, r1):
            for c in range(C):
                v = np.int64(flat[r * C + c])
                sums[b, c] += v
                sqs[b, c] += v * v
                mins[b, c] = min(mins[b, c], v)
                maxs[b, c] = max(maxs[b, c], v)
