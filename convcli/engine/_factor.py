"""Separability of kernels: exact integer factors where the taps are integers (times a power of
two), else rank-1 factors by SVD of every mode unfolding (HOSVD). Results are cached per kernel."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SEPARABLE_RTOL = 1e-6
MAX_EXACT_SHIFT = 30  # taps that are integers times 2**-30 or coarser count as "integer" kernels
MAX_EXACT_TAP = 1 << 24  # integer factors stay below this, so float32 holds every tap exactly


def dyadic_integers(k: np.ndarray) -> tuple[np.ndarray, int] | None:
    """``(m, shift)`` with ``k == m * 2**-shift`` exactly, ``m`` int64 with every ``|m| < 2**24``
    and the smallest such ``shift >= 0``; None when the taps are not such numbers (1/9, 0.3, ...)."""
    for shift in range(MAX_EXACT_SHIFT + 1):
        scaled = np.ldexp(k, shift)
        if np.all(scaled == np.rint(scaled)):
            if np.max(np.abs(scaled)) >= MAX_EXACT_TAP:
                return None
            return scaled.astype(np.int64), shift
    return None


def integer_factors(m: np.ndarray) -> list[np.ndarray] | None:
    """Integer 1-D factors whose outer product is the integer array ``m`` exactly, or None.

    Along the first axis: the first nonzero slice divided by the gcd of its entries is a primitive
    integer vector ``v``; ``m`` is rank-1 exactly when every slice is ``u_i * v`` with ``u_i`` an
    integer (a rational multiple of a primitive vector that is an integer vector has an integer
    multiplier). Then ``v`` is factorised the same way over the remaining axes.
    """
    if m.ndim == 1:
        return [m] if np.any(m) else None
    flat = m.reshape(m.shape[0], -1)
    nonzero = np.flatnonzero(np.any(flat != 0, axis=1))
    if nonzero.size == 0:
        return None
    row = flat[nonzero[0]]
    v = row // np.gcd.reduce(np.abs(row))
    j = int(np.flatnonzero(v)[0])
    if v[j] < 0:
        v = -v
    if np.any(flat[:, j] % v[j]):
        return None
    u = flat[:, j] // v[j]
    if not np.array_equal(np.outer(u, v), flat):
        return None
    rest = integer_factors(v.reshape(m.shape[1:]))
    return None if rest is None else [u, *rest]


def exact_factors(k: np.ndarray) -> list[np.ndarray] | None:
    """Float factors of a rank-1 kernel of integers times a power of two (Sobel, binomial, box
    sums, ``[1 2 1]/16``), exact in float32: the outer product reproduces every tap bit for bit,
    so integer data filtered on the separable path gives exact integer sums. None otherwise."""
    found = dyadic_integers(k)
    if found is None:
        return None
    m, shift = found
    ints = integer_factors(m)
    if ints is None:
        return None
    factors = [f.astype(np.float64) for f in ints]
    factors[0] = np.ldexp(factors[0], -shift)
    return factors


def separable_factors(k: np.ndarray, rtol: float = SEPARABLE_RTOL) -> list[np.ndarray] | None:
    """1-D factors whose outer product is ``k`` (within ``rtol`` of its largest tap), or None.

    Exact integer factors (:func:`exact_factors`) where they exist, else the HOSVD's."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim == 1:
        return [k.copy()]
    scale = float(np.max(np.abs(k)))
    if scale == 0.0:
        return None
    exact = exact_factors(k)
    if exact is not None:
        return exact
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
    Cached per kernel (shape and bytes): tiled work filters many small blocks with one kernel, and
    the SVDs cost more than filtering a 64x64 block. The factors are read-only; copy to modify.
    """
    found = cached_terms(k, rtol, max_rank)
    return None if found is None else [list(t) for t in found]


def cached_terms(k: np.ndarray, rtol: float = SEPARABLE_RTOL, max_rank: int = MAX_LOW_RANK) -> tuple[tuple[np.ndarray, ...], ...] | None:
    """:func:`separable_terms` as the cache holds them: tuples of read-only factors."""
    k = np.ascontiguousarray(k, dtype=np.float64)
    return _terms_cached(k.shape, k.tobytes(), rtol, max_rank)


@lru_cache(maxsize=256)
def _terms_cached(shape: tuple[int, ...], data: bytes, rtol: float, max_rank: int) -> tuple[tuple[np.ndarray, ...], ...] | None:
    found = _separable_terms(np.frombuffer(data, dtype=np.float64).reshape(shape), rtol, max_rank)
    if found is None:
        return None
    for term in found:
        for f in term:
            f.setflags(write=False)
    return tuple(tuple(t) for t in found)


def _separable_terms(k: np.ndarray, rtol: float, max_rank: int) -> list[list[np.ndarray]] | None:
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
