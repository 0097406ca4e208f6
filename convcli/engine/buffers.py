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


def scratch(name: str, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """A C-contiguous array of ``shape`` and ``dtype``, uninitialised, reused from call to call:
    valid until this thread asks for ``name`` again (grown when a larger one is asked for)."""
    pool: dict[str, np.ndarray] = _local.__dict__.setdefault("pool", {})
    dtype = np.dtype(dtype)
    n = math.prod(shape) * dtype.itemsize
    buf = pool.get(name)
    if buf is None or buf.size < n:
        buf = pool[name] = np.empty(max(n, 1), np.uint8)
    return buf[:n].view(dtype).reshape(tuple(shape))
