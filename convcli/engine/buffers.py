"""Per-thread result buffers for callers that run the engine over and over (a batch of files, the
blocks of a chunked run), handed to the filters as ``out=``.

A fresh array of tens of MB costs a page fault and a zeroed page on the first touch of every page:
13% of a chunked 3x3x3 run's CPU went to the kernel zeroing pages (perf). A buffer here is reused
by the next request of the same name on the same thread, so equally sized images (or blocks) fault
their pages in once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

_local = threading.local()

ALIGN = 64  # bytes: a cache line, and one AVX-512 vector
ALIGN_MIN_BYTES = 1 << 16  # smaller arrays are left as numpy allocates them


def empty(shape: Sequence[int], dtype: Any) -> np.ndarray:
    """``np.empty``, 64-byte aligned. numpy's large arrays start 16 bytes into a page, so with
    64-byte vectors every load and store of a row straddled two cache lines: the engine's results
    are allocated here (float32 4096^2, one thread, writing into an aligned array instead: 3x3
    28.1 -> 21.6 ms, 5x5 38.9 -> 32, 9x9 82 -> 70, a separable Gaussian 31 78 -> 74)."""
    dtype = np.dtype(dtype)
    n = math.prod(shape) * dtype.itemsize
    if n < ALIGN_MIN_BYTES:  # (reading the address costs a small call more than alignment saves)
        return np.empty(shape, dtype)
    raw = np.empty(n + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + n].view(dtype).reshape(tuple(shape))


def scratch(name: str, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """A C-contiguous array of ``shape`` and ``dtype``, uninitialised, reused from call to call:
    valid until this thread asks for ``name`` again (grown when a larger one is asked for)."""
    pool: dict[str, np.ndarray] = _local.__dict__.setdefault("pool", {})
    dtype = np.dtype(dtype)
    n = math.prod(shape) * dtype.itemsize
    buf = pool.get(name)
    if buf is None or buf.size < n:
        buf = pool[name] = empty((max(n, 1),), np.uint8)
    return buf[:n].view(dtype).reshape(tuple(shape))
