"""The one place that holds Numba's options; every @njit in convcli takes them from here.

Fast-math is limited to the flags that keep NaN/Inf semantics: ``nnan``/``ninf`` would let LLVM
assume no NaN exists, and NaN in float TIFFs must propagate.
"""

from __future__ import annotations

from typing import Any

FASTMATH_FLAGS = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

# Serial kernels over task ranges (engine.tasks spreads them over threads): parallel=True's parfor
# lowering doubled the first run's compile time, and its OpenMP layer fought --jobs threads.
JIT_OPTIONS: dict[str, Any] = {
    "parallel": False,
    "cache": True,
    "nogil": True,
    "fastmath": set(FASTMATH_FLAGS),
}


def njit(func: Any) -> Any:
    """``numba.njit`` with convcli's options; importing this module imports numba."""
    import numba

    return numba.njit(**JIT_OPTIONS)(func)
