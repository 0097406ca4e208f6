"""Spreading a kernel's independent tasks over threads.

The Numba kernels are serial and release the GIL (``nogil``): each takes a task range
``t0 .. t1-1`` (row blocks, planes, chunks) and writes only its own part of the output. This module
splits the range over a shared thread pool. Serial kernels compile in about half the time of
``parallel=True`` ones, small calls run on the calling thread without waking anyone, and
``--jobs`` batches just lower the thread count per worker (no OpenMP threading layer involved).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol

from .tuning import COMPILE_NOTICE_SECONDS, MIN_WORK_PER_THREAD

_local = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_ready: set[tuple[Any, ...]] = set()  # kernels and argument types loaded or compiled in this process
_ready_lock = threading.Lock()


class CompileNotice(Protocol):
    """Told when compiling a kernel takes longer than COMPILE_NOTICE_SECONDS (the CLI shows it)."""

    def start(self, what: str) -> None: ...

    def stop(self) -> None: ...


_notice: CompileNotice | None = None
KERNEL_WORDS = {
    "bank_rows": "direct filter", "bank_flat": "direct filter, narrow rows", "separable_yx": "separable filter",
    "to_float": "conversion to float", "round_clip": "conversion to integers", "partials": "statistics",
    "squares": "statistics",
}  # fmt: skip


def set_compile_notice(notice: CompileNotice | None) -> None:
    global _notice
    _notice = notice


def cores() -> int:
    """Cores this process may run on (``CONVCLI_THREADS`` overrides)."""
    env = os.environ.get("CONVCLI_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads() -> int:
    """Threads a kernel call on this thread may use (see :func:`using_threads`)."""
    return int(getattr(_local, "threads", 0)) or cores()


@contextmanager
def using_threads(n: int) -> Iterator[None]:
    """Kernel calls made by this thread use at most ``n`` threads (``--jobs`` workers use this)."""
    before = getattr(_local, "threads", 0)
    _local.threads = max(1, n)
    try:
        yield
    finally:
        _local.threads = before


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, cores() - 1), thread_name_prefix="convcli")
        return _pool


def _key(kernel: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """What Numba's typing of these arguments depends on, cheaply (dtype, rank, layout, writeable)."""
    return (kernel, *((a.dtype, a.ndim, a.flags.c_contiguous, a.flags.writeable) if hasattr(a, "dtype") and hasattr(a, "flags") else type(a) for a in args))


def _prepare(kernel: Any, args: tuple[Any, ...]) -> None:
    """Load or compile ``kernel`` for these arguments before the tasks run; if that takes longer
    than COMPILE_NOTICE_SECONDS, the notice says so while it lasts."""
    key = _key(kernel, args)
    if key in _ready:
        return
    with _ready_lock:  # one compile at a time; the others wait for it and find it ready
        if key in _ready:
            return
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
                notice.start(f"{KERNEL_WORDS.get(kernel.__name__, kernel.__name__)} ({dtype})")

        timer = threading.Timer(COMPILE_NOTICE_SECONDS, show)
        timer.daemon = True
        timer.start()
        try:
            kernel.compile(sig)  # from Numba's on-disk cache when it is there
        finally:
            timer.cancel()
            if shown.is_set() and notice is not None:
                notice.stop()
        _ready.add(key)


def run(kernel: Callable[..., Any], ntasks: int, *args: Any, work: float = 1e18) -> None:
    """``kernel(*args, t0, t1)`` over ``0 .. ntasks-1``, split in contiguous ranges over up to
    ``threads()`` threads; ``work`` (multiply-adds, roughly) keeps small calls on this thread."""
    _prepare(kernel, args)
    n = min(threads(), ntasks, max(1, int(work // MIN_WORK_PER_THREAD)))
    if n <= 1:
        kernel(*args, 0, ntasks)
        return
    bounds = [ntasks * i // n for i in range(n + 1)]
    pool = _shared_pool()
    futures = [pool.submit(kernel, *args, bounds[i], bounds[i + 1]) for i in range(1, n)]
    try:
        kernel(*args, bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()  # waits, and re-raises a worker's exception here
