"""The requests the session protocol makes of a store, as plain values.

The protocol (``core/manager.py``) is written as generators that *yield* these
operations and receive the store's answer; it never calls a store itself. A sync
driver answers with blocking calls, an async driver with awaits (``runners.py``).
So the protocol exists once, with no I/O, and tests can drive it by hand.

Each operation knows which store method answers it (``apply``); the same call
works for a sync store (returns the answer) and an async one (returns an
awaitable), because both kinds of store use the same method names.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Add",
    "Batch",
    "Delete",
    "Get",
    "Operation",
    "Record",
    "Sleep",
    "Stored",
    "Touch",
    "Write",
]


@dataclass(frozen=True, slots=True)
class Record:
    """A stored session as read: its bytes, a version for conditional writes, its node.

    ``node`` is the store node the bytes came from; when it differs from the node
    named in the session id, the session has relocated (MSM) and the id changes.
    """

    value: bytes
    version: Hashable
    node: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    """A successful conditional write: the new version and where it landed."""

    version: Hashable
    node: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Get:
    """Read a key; with ``touch`` also refresh its TTL in the same round trip
    (memcached ``gat``, Redis ``GETEX``), so a read-only request costs one trip."""

    key: str
    node: str | None = None
    touch: float | None = None

    def apply(self, store: Any) -> Any:
        return store.get(self.key, node=self.node, touch=self.touch)


@dataclass(frozen=True, slots=True, kw_only=True)
class Write:
    """Write if the stored version is still ``version`` (``None``: only if absent).

    Answered with ``Stored`` or ``None`` when another writer got there first.
    """

    key: str
    value: bytes
    ttl: float
    version: Hashable | None
    node: str | None = None

    def apply(self, store: Any) -> Any:
        return store.write(self.key, self.value, ttl=self.ttl, version=self.version, node=self.node)


@dataclass(frozen=True, slots=True, kw_only=True)
class Add:
    """Store only if absent; answered with ``True`` when stored (used for locks)."""

    key: str
    value: bytes
    ttl: float
    node: str | None = None

    def apply(self, store: Any) -> Any:
        return store.add(self.key, self.value, ttl=self.ttl, node=self.node)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    """Remove a key; answered with ``None`` whether or not it existed."""

    key: str
    node: str | None = None

    def apply(self, store: Any) -> Any:
        return store.delete(self.key, node=self.node)


@dataclass(frozen=True, slots=True, kw_only=True)
class Touch:
    """Refresh a key's TTL without reading it; answered with ``True`` if it exists."""

    key: str
    ttl: float
    node: str | None = None

    def apply(self, store: Any) -> Any:
        return store.touch(self.key, ttl=self.ttl, node=self.node)


@dataclass(frozen=True, slots=True)
class Batch:
    """Several operations the store may send together (one pipelined round trip).

    Answered with a list of answers in order; an operation that failed answers with
    its ``StoreError`` instead of raising, so the protocol sees every outcome.
    """

    ops: tuple[Get | Write | Add | Delete | Touch, ...]

    def apply(self, store: Any) -> Any:
        return store.batch(self.ops)


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before retrying (lock back-off); the driver sleeps its own way."""

    seconds: float


Operation = Get | Write | Add | Delete | Touch | Batch | Sleep
