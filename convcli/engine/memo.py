"""A bounded memory of values made once per process (plans, direct jobs, numpy forms).

Repeated small calls (tiles, patches, Dask blocks) find what their first call made; the oldest
entries go first, and threads may store at once.
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class Memo(Generic[V]):
    """At most ``size`` values by key; reading takes no lock (a dict read is atomic)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: dict[Any, V] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> V | None:
        return self._values.get(key)

    def __contains__(self, key: Any) -> bool:
        return key in self._values

    def __getitem__(self, key: Any) -> V:
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def put(self, key: Any, value: V) -> None:
        with self._lock:
            while len(self._values) >= self.size:
                del self._values[next(iter(self._values))]  # the oldest
            self._values[key] = value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
