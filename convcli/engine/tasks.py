"""Calling the compiled kernels: every Numba kernel of the engine is called through :func:`run`.

Each kernel takes a task range ``t0 .. t1-1`` (row blocks, planes, chunks) and runs it in a
``prange``; a call too small to pay for waking Numba's threads runs the kernel's serial twin on
this thread instead. Before the first call with new argument types, :func:`run` loads the kernel
from Numba's cache or compiles it, and announces a compile that takes a while. Thread counts are
per calling thread (``--jobs`` workers and Dask threads lower theirs) and reach Numba only around
a compiled call, so work that never runs a compiled kernel never imports Numba.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from . import tuning

_ready: set[tuple[Any, ...]] = set()  # kernels and argument types loaded or compiled in this process
_ready_lock = threading.Lock()
_local = threading.local()  # seconds this thread spent loading or compiling kernels

KERNEL_WORDS = {
    "correlate_bank": "direct filter", "correlate_unrolled": "direct filter (3x3/5x5)", "separable_yx": "separable filter",
    "columns_inplace": "separable filter (z)", "to_float": "conversion to float", "round_clip": "conversion to integers", "partials": "statistics",
    "squares": "statistics",
}  # fmt: skip


class CompileNotice(Protocol):
    """Told when compiling a kernel takes longer than COMPILE_NOTICE_SECONDS (the CLI shows it)."""

    def start(self, what: str) -> None: ...

    def stop(self) -> None: ...


_notice: CompileNotice | None = None


def set_compile_notice(notice: CompileNotice | None) -> None:
    global _notice
    _notice = notice


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def max_threads() -> int:
    """Numba's thread pool size (``NUMBA_NUM_THREADS``, else the cores), without importing Numba."""
    if "numba" in sys.modules:
        import numba

        return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    return max(1, int(os.environ.get("NUMBA_NUM_THREADS", cores())))


def threads() -> int:
    """Threads a kernel call on this thread may use: :func:`set_threads`' count, else Numba's
    own (which is per thread, and which nothing can have changed before Numba is imported)."""
    wanted = getattr(_local, "threads", None)
    if wanted is not None:
        return max(1, min(wanted, max_threads()))
    if "numba" not in sys.modules:
        return max_threads()
    import numba

    return int(numba.get_num_threads())


def set_threads(n: int | None) -> None:
    """Kernel calls made by this thread use at most ``n`` threads (``None``: Numba's own count).
    Applied around each compiled call (see :func:`run`), so setting it never imports Numba."""
    _local.threads = None if n is None else max(1, n)


@contextmanager
def using_threads(n: int) -> Iterator[None]:
    """Kernel calls made by this thread use at most ``n`` threads while the block runs."""
    before = getattr(_local, "threads", None)
    set_threads(n)
    try:
        yield
    finally:
        set_threads(before)


_threadsafe = False


def threadsafe_layer() -> None:
    """Kernels may run from several threads of this process at once (``--jobs``, Dask threads):
    Numba must then use a thread-safe layer (OpenMP or TBB; its default workqueue is not), chosen
    before its first parallel kernel. Applied when a compiled kernel is first prepared, so a
    process that only runs numpy never imports Numba."""
    global _threadsafe
    _threadsafe = True


def _apply_layer() -> None:
    if _threadsafe and "NUMBA_THREADING_LAYER" not in os.environ:
        import numba

        numba.config.THREADING_LAYER = "threadsafe"  # type: ignore[attr-defined]


BACKENDS = ("auto", "numba", "numpy")


def compiled(work: float) -> bool:
    """Whether a filter of ``work`` multiply-adds planned on this thread runs on the Numba kernels:
    by size (tuning.numpy_small), unless :func:`backend` or the environment variable
    ``CONVCLI_BACKEND`` (``numba``, ``numpy`` or ``auto``) says otherwise."""
    choice = backend_choice()
    return not tuning.numpy_small(work) if choice == "auto" else choice == "numba"


def backend_choice() -> str:
    """This thread's back end: :func:`backend`'s, else ``CONVCLI_BACKEND``'s, else ``"auto"``."""
    choice = getattr(_local, "backend", None) or os.environ.get("CONVCLI_BACKEND") or "auto"
    if choice not in BACKENDS:
        from ..errors import UsageError

        msg = f"CONVCLI_BACKEND={choice!r}: use one of {', '.join(BACKENDS)}"
        raise UsageError(msg)
    return choice


@contextmanager
def backend(name: str) -> Iterator[None]:
    """Filters planned by this thread while the block runs use ``name``: ``"numba"`` (the compiled
    kernels), ``"numpy"`` or ``"auto"`` (by size). Tiled work uses the choice of the whole array,
    so every tile rounds as the whole would."""
    if name not in BACKENDS:
        msg = f"backend must be one of {BACKENDS}, not {name!r}"
        raise ValueError(msg)
    before = getattr(_local, "backend", None)
    _local.backend = name
    try:
        yield
    finally:
        _local.backend = before


def _key(kernel: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """What Numba's typing of these arguments depends on, cheaply (dtype, rank, layout, writeable)."""
    return (kernel, *((a.dtype, a.ndim, a.flags.c_contiguous, a.flags.writeable) if hasattr(a, "flags") else type(a) for a in args))


def _prepare(kernel: Any, args: tuple[Any, ...]) -> None:
    """Load or compile ``kernel`` for these arguments before it runs; if that takes longer than
    COMPILE_NOTICE_SECONDS, the notice says so while it lasts."""
    if not hasattr(kernel, "compile"):  # NUMBA_DISABLE_JIT=1: a plain Python function
        return
    key = _key(kernel, args)
    if key in _ready:
        return
    started = time.perf_counter()
    with _ready_lock:  # one compile at a time; the others wait for it and find it ready
        try:
            _prepare_locked(kernel, args, key)
        finally:
            _local.seconds = getattr(_local, "seconds", 0.0) + time.perf_counter() - started


def preparation_seconds() -> float:
    """Seconds this thread has spent loading or compiling kernels (timings subtract it: a report's
    filtering time should not include the one-time compile)."""
    return float(getattr(_local, "seconds", 0.0))


def _prepare_locked(kernel: Any, args: tuple[Any, ...], key: tuple[Any, ...]) -> None:
    if key in _ready:
        return
    _apply_layer()
    from numba import typeof

    sig = tuple(typeof(a) for a in (*args, 0, 0))
    # Numba's one-time set-up of its code generator (about a second) is not a compile: do it
    # before the clock starts, so only a real compile is announced, not a cache load.
    refresh = getattr(getattr(kernel, "targetctx", None), "refresh", None)
    if refresh is not None:
        refresh()
    notice = _notice
    shown = threading.Event()

    def show() -> None:
        if notice is not None:
            shown.set()
            dtype = next((a.dtype for a in args if hasattr(a, "dtype")), "")
            name = kernel.__name__.removesuffix("_serial")
            words = next((said for prefix, said in KERNEL_WORDS.items() if name.startswith(prefix)), name)  # (correlate_bank_columns ...)
            notice.start(f"{words} ({dtype})")

    timer = threading.Timer(tuning.COMPILE_NOTICE_SECONDS, show)
    timer.daemon = True
    timer.start()
    try:
        kernel.compile(sig)  # from Numba's on-disk cache when it is there
    finally:
        timer.cancel()
        if shown.is_set() and notice is not None:
            notice.stop()
    _ready.add(key)


def run(kernel: Callable[..., Any], ntasks: int, *args: Any, work: float = 1e18, ready: Any = None) -> None:
    """``kernel(*args, 0, ntasks)`` on Numba's threads, or for ``work`` (multiply-adds or values)
    below tuning.SERIAL_MAX_MACS its serial twin on this thread (see tuning.serial).

    ``ready``: a hashable value that stands for the arguments' types (a remembered call that always
    passes arrays of the same kinds), cheaper than reading them from ``args`` on every call."""
    serial = tuning.serial(int(min(work, 1e18)))
    if serial:
        from ._jit import serial_twin

        kernel = serial_twin(kernel)
    if ready is None:
        _prepare(kernel, args)
    elif (kernel, ready) not in _ready:
        _prepare(kernel, args)
        _ready.add((kernel, ready))
    wanted = getattr(_local, "threads", None)
    if wanted is None or serial or not hasattr(kernel, "compile"):  # (a serial twin starts no threads;
        kernel(*args, 0, ntasks)  # NUMBA_DISABLE_JIT=1: a plain function)
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    try:
        kernel(*args, 0, ntasks)
    finally:
        numba.set_num_threads(before)
