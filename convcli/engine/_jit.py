"""The one place that holds Numba's options; every @njit in convcli takes them from here.

Fast-math is limited to the flags that keep NaN/Inf semantics: ``nnan``/``ninf`` would let LLVM
assume no NaN exists, and NaN in float TIFFs must propagate.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any


def _prefer_full_vectors() -> None:
    """On a CPU with AVX-512, let LLVM vectorise with 512-bit registers. Its tuning for Intel
    server cores prefers 256 bits (against the clock drop of early AVX-512 parts); with full width
    the kernels ran 8-18% faster on one thread (Xeon Sapphire Rapids, interleaved A/B), within
    noise on two. Read from this machine's features before Numba's first import; a user's own
    ``NUMBA_CPU_FEATURES`` or ``NUMBA_CPU_NAME`` wins, and Numba keys its cache by the features."""
    if "numba" in sys.modules or any(k in os.environ for k in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME", "NUMBA_ENABLE_AVX")):
        return
    try:
        import llvmlite.binding as ll

        features = ll.get_host_cpu_features().flatten()
        name = ll.get_host_cpu_name()
    except (ImportError, RuntimeError):  # (no feature list on this platform: LLVM's defaults)
        return
    if name in ("nocona", "corei7-avx", "core-avx-i", "sandybridge", "ivybridge"):  # Numba turns AVX off there (numba#9582)
        return
    if "+avx512f" in features.split(","):
        os.environ["NUMBA_CPU_FEATURES"] = features + ",-prefer-256-bit"


_prefer_full_vectors()


def vector_registers() -> int:
    """The vector registers of the CPU features Numba compiles for (``NUMBA_CPU_FEATURES``, else the
    host's with ``NUMBA_ENABLE_AVX`` applied, as ``numba.core.codegen`` does): 32 with AVX-512,
    else 16. Numba's cache index holds the same features, so a cached kernel that chose by them
    is loaded only where the choice is the same."""
    config = numba_config()
    return _registers(config.CPU_FEATURES, bool(config.ENABLE_AVX))


@lru_cache(maxsize=4)
def _registers(features: str | None, avx: bool) -> int:
    # (avx, NUMBA_ENABLE_AVX, is only part of the cache key: get_host_cpu_features reads it itself)
    if features is None:
        from numba.core.codegen import get_host_cpu_features

        features = get_host_cpu_features()
    return registers_of(features)


def registers_of(features: str) -> int:
    """32 vector registers for a feature list (LLVM's "+a,-b" form) with AVX-512, else 16."""
    return 32 if "+avx512f" in features.split(",") else 16


from numba import prange  # noqa: E402  (after the features are set)

__all__ = ["FASTMATH_FLAGS", "JIT_OPTIONS", "ORDERED_FLAGS", "njit", "njit_ordered", "njit_rounding", "njit_serial", "numba_config", "overload", "prange", "serial_twin", "specialised", "vector_registers"]


def numba_config() -> Any:
    """Numba's configuration module (imported after the CPU features are set)."""
    from numba.core import config

    return config

FASTMATH_FLAGS = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
# without reassoc: LLVM keeps the source's order of sums, so a block written line by line keeps
# each loaded line in a register for all the rows it serves (with reassoc it rebuilt one chain per
# row and loaded every line again for each: Zen 1, 9x9 at 4096^2, 13.6 against 10.1 GMAC/s)
ORDERED_FLAGS = FASTMATH_FLAGS - {"reassoc"}

# parallel=True: the prange body is compiled as a gufunc whose array arguments Numba marks noalias,
# so the tap loops vectorise without runtime alias checks; the same code compiled serially ran
# 1.2-1.4x slower (interleaved A/B at 4096^2). Small calls use a serial twin (serial_twin below).
JIT_OPTIONS: dict[str, Any] = {
    "parallel": True,
    "cache": True,
    "nogil": True,
    "fastmath": set(FASTMATH_FLAGS),
}


def njit(func: Any) -> Any:
    """``numba.njit`` with convcli's options; importing this module imports numba."""
    import numba

    return numba.njit(**JIT_OPTIONS)(func)


def njit_serial(func: Any) -> Any:
    """For helpers called from parallel kernels (no prange inside: the parfor passes only cost
    compile time there)."""
    import numba

    return numba.njit(**{**JIT_OPTIONS, "parallel": False})(func)


def njit_ordered(func: Any) -> Any:
    """``njit_serial`` with the sums in the source's order (ORDERED_FLAGS), for tap blocks whose
    loads are shared between rows; LLVM keeps each instruction's flags when it inlines them."""
    import numba

    return numba.njit(**{**JIT_OPTIONS, "parallel": False, "fastmath": set(ORDERED_FLAGS)})(func)


def njit_rounding(func: Any) -> Any:
    """For serial helpers whose float steps must round as numpy's separate operations do (no
    fast-math: no fused multiply-add, no reassociation), so results match the unfused path bit for bit."""
    import numba

    return numba.njit(**{**JIT_OPTIONS, "parallel": False, "fastmath": False})(func)


def overload(func: Any) -> Any:
    """``numba.extending.overload`` with convcli's options: ``func``'s implementation chosen by the
    argument types when a kernel calling it compiles (``func`` itself runs without the JIT)."""
    from numba.extending import overload as numba_overload

    return numba_overload(func, jit_options={"fastmath": set(FASTMATH_FLAGS)})


_twins: dict[Any, Any] = {}
_copy_lock = threading.Lock()  # (see _once)


def serial_twin(kernel: Any) -> Any:
    """The same kernel compiled without threads (``prange`` runs as ``range``), for calls too small
    to pay for waking Numba's threads; made once per kernel, as a copy under its own name
    (``_renamed``). (A serial body called from a ``prange`` driver measured 5-20% slower at 4096^2
    than the kernel compiled whole, so the kernel is compiled twice instead.)
    """
    def make() -> Any:
        import numba

        f = getattr(kernel, "py_func", kernel)  # NUMBA_DISABLE_JIT=1: njit returned the function itself
        return numba.njit(**{**JIT_OPTIONS, "parallel": False})(_renamed(f, "serial", f.__globals__))

    return _once(_twins, kernel, make)


_specialised: dict[tuple[Any, str], Any] = {}


def specialised(func: Any, suffix: str, **constants: Any) -> Any:
    """``njit(func)`` compiled as ``{name}_{suffix}`` with some of its globals fixed to
    ``constants``; made once per suffix. Numba reads globals as compile-time constants and prunes
    branches on them before typing, so a copy types and compiles only the paths its constants
    select (a kernel with several modes: each call compiles only its own)."""
    return _once(_specialised, (func, suffix), lambda: njit(_renamed(func, suffix, {**func.__globals__, **constants})))


def _once(table: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
    """``table[key]``, made by ``make()`` the first time (under a lock: ``--jobs`` threads that
    meet a kernel at once make one copy, compiled once)."""
    made = table.get(key)
    if made is None:
        with _copy_lock:
            made = table.get(key)
            if made is None:
                made = table[key] = make()
    return made


def _renamed(f: Any, suffix: str, globals_: dict[str, Any]) -> Any:
    """A copy of the Python function ``f`` named ``{name}_{suffix}``, reading ``globals_``. Numba's
    on-disk cache keys its index by function name and signature (not by flags or globals), so
    copies compiled differently must not share a name."""
    import types

    copy = types.FunctionType(f.__code__, globals_, f"{f.__name__}_{suffix}", f.__defaults__, f.__closure__)
    copy.__qualname__ = f"{f.__qualname__}_{suffix}"
    copy.__module__ = f.__module__
    copy.__doc__ = f.__doc__
    return copy
