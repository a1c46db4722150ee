"""The ``memory`` store: sessions in this process only, bounded, with LRU eviction.

Useful for one node, for tests, and as the local half of sticky mode. It is not
shared: two nodes with the memory store see different sessions (that is what the
other stores are for).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from sessionshare.core.operations import Record, Stored
from sessionshare.stores.base import Store

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Entry:
    value: bytes
    version: int
    expires_at: float


class MemoryStore(Store):
    """A dict with TTLs, versions for conditional writes, and a size bound.

    When ``max_entries`` is reached the least recently used entry is evicted and
    ``evictions`` counts it, so an operator sees the bound being hit instead of
    sessions vanishing silently. A lock makes it safe for threaded WSGI servers.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock
        self._next_version = 0
        self.max_entries = max_entries
        self.evictions = 0
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return (
            f"<MemoryStore [{len(self._entries)}/{self.max_entries} entries, "
            f"{self.evictions} evicted]>"
        )

    def __len__(self) -> int:
        return len(self._entries)

    # Every method below runs under self._lock and calls only these two helpers.

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def _put(self, key: str, value: bytes, ttl: float) -> _Entry:
        self._next_version += 1
        entry = _Entry(value, self._next_version, self._clock() + ttl)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evictions += 1
        return entry

    def get(
        self, key: str, *, node: str | None = None, touch: float | None = None
    ) -> Record | None:
        with self._lock:
            entry = self._live(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            if touch is not None:
                entry.expires_at = self._clock() + touch
            return Record(entry.value, entry.version)

    def write(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float,
        version: Hashable | None,
        node: str | None = None,
    ) -> Stored | None:
        with self._lock:
            current = self._live(key)
            current_version = None if current is None else current.version
            if current_version != version:
                return None
            return Stored(self._put(key, value, ttl).version)

    def add(self, key: str, value: bytes, *, ttl: float, node: str | None = None) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._put(key, value, ttl)
            return True

    def delete(self, key: str, *, node: str | None = None) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def touch(self, key: str, *, ttl: float, node: str | None = None) -> bool:
        with self._lock:
            entry = self._live(key)
            if entry is None:
                return False
            entry.expires_at = self._clock() + ttl
            return True

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "kind": "memory",
                "items": len(self._entries),
                "max_entries": self.max_entries,
                "evictions": self.evictions,
                "hits": self.hits,
                "misses": self.misses,
            }
