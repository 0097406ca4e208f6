"""Separability of kernels: rank-1 factors by SVD of every mode unfolding (HOSVD)."""

from __future__ import annotations

import numpy as np

SEPARABLE_RTOL = 1e-6


def separable_factors(k: np.ndarray, rtol: float = SEPARABLE_RTOL) -> list[np.ndarray] | None:
    """1-D factors whose outer product is ``k`` (within ``rtol`` of its largest tap), or None."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim == 1:
        return [k.copy()]
    scale = float(np.max(np.abs(k)))
    if scale == 0.0:
        return None
    vectors = []
    for axis in range(k.ndim):
        unfolded = np.moveaxis(k, axis, 0).reshape(k.shape[axis], -1)
        u, s, _ = np.linalg.svd(unfolded, full_matrices=False)
        if s.size > 1 and s[1] > rtol * s[0]:
            return None
        v = u[:, 0]
        if v[np.argmax(np.abs(v))] < 0:
            v = -v
        vectors.append(v)
    lam = k
    for v in vectors:
        lam = np.tensordot(lam, v, axes=([0], [0]))
    scalar = float(lam)
    mag = abs(scalar) ** (1.0 / k.ndim)
    factors = [v * mag for v in vectors]
    if scalar < 0:
        factors[0] = -factors[0]
    recon = factors[0]
    for f in factors[1:]:
        recon = np.multiply.outer(recon, f)
    if not np.allclose(recon, k, rtol=0.0, atol=rtol * scale * 10):
        return None
    return factors


def matrix_rank(k: np.ndarray, rtol: float = SEPARABLE_RTOL) -> int:
    """Rank of a 2-D kernel (1 means separable); for 1-D and 3-D, 1 if separable else the 2-D
    rank of the unfolding along the first axis."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim == 1:
        return 1 if np.any(k) else 0
    s = np.linalg.svd(k.reshape(k.shape[0], -1), compute_uv=False)
    if s[0] == 0:
        return 0
    rank = int(np.sum(s > rtol * s[0]))
    if rank == 1 and k.ndim > 2 and separable_factors(k, rtol) is None:
        return 2
    return rank


MAX_LOW_RANK = 3


def separable_terms(k: np.ndarray, rtol: float = SEPARABLE_RTOL, max_rank: int = MAX_LOW_RANK) -> list[list[np.ndarray]] | None:
    """``k`` as a sum of at most ``max_rank`` outer products (each a list of 1-D factors), or None.

    Rank-1 kernels of any dimension come from :func:`separable_factors`; 2-D kernels of rank r
    from the SVD ``k = sum_i s_i u_i v_i^T`` (dropping singular values below ``rtol * s_0``).
    """
    factors = separable_factors(k, rtol)
    if factors is not None:
        return [factors]
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2:
        return None
    u, s, vt = np.linalg.svd(k, full_matrices=False)
    if s[0] == 0.0:
        return None
    rank = int(np.sum(s > rtol * s[0]))
    if rank > max_rank:
        return None
    return [[u[:, i] * np.sqrt(s[i]), vt[i] * np.sqrt(s[i])] for i in range(rank)]
