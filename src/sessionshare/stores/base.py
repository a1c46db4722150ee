"""The interface every session store implements, in a sync and an async flavour.

A store deals in opaque bytes under string keys; it knows nothing of sessions,
cookies or serialization. What it must offer (SPEC §3-§4):

- ``get`` with a version (memcached ``gets`` cas token, Redis a counter …), optionally
  refreshing the TTL in the same round trip;
- ``write`` conditional on that version, so concurrent requests can merge instead
  of overwriting each other (``version=None`` means add-if-absent);
- ``add`` (add-if-absent, for locks), ``delete``, ``touch``;
- ``place``: the store node a new key should live on (``None`` for stores without
  named nodes), and ``nodes``: the node ids a session id may name;
- ``preferred_route``: the app node a sticky balancer should send a session to, for a
  store whose app nodes are themselves the store (peer replication); ``None`` else;
- per-operation timeouts: a store raises ``StoreTimeout`` / ``StoreUnavailable``
  (from ``sessionshare.errors``), never its client library's exceptions.

``batch`` runs several operations and may pipeline them into one round trip; the
default here runs them one by one, so a simple store need not care.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Hashable, Sequence
from typing import Any

from sessionshare.core.operations import Add, Delete, Get, Record, Stored, Touch, Write
from sessionshare.errors import StoreError

__all__ = [
    "AsyncOperationStore",
    "AsyncStore",
    "BlockingStoreAdapter",
    "OperationStore",
    "Store",
    "StoreOp",
]

StoreOp = Get | Write | Add | Delete | Touch


class Store(abc.ABC):
    """A blocking store, for WSGI servers (one request per thread)."""

    #: node ids that may appear in session ids; empty for stores without named nodes.
    nodes: frozenset[str] = frozenset()

    @abc.abstractmethod
    def get(
        self, key: str, *, node: str | None = None, touch: float | None = None
    ) -> Record | None:
        """The record under ``key`` or ``None``; ``touch`` refreshes the TTL (seconds)."""

    @abc.abstractmethod
    def write(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float,
        version: Hashable | None,
        node: str | None = None,
    ) -> Stored | None:
        """Store ``value`` if the current version is ``version``; ``None`` on conflict."""

    @abc.abstractmethod
    def add(self, key: str, value: bytes, *, ttl: float, node: str | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent."""

    @abc.abstractmethod
    def delete(self, key: str, *, node: str | None = None) -> None:
        """Remove ``key`` (no error if absent)."""

    @abc.abstractmethod
    def touch(self, key: str, *, ttl: float, node: str | None = None) -> bool:
        """Refresh the TTL of ``key``; ``False`` if it does not exist."""

    def place(self, key: str) -> str | None:
        """The node a *new* key goes to; no I/O (it uses the store's health view)."""
        return None

    def preferred_route(self, key: str) -> str | None:
        """The route of the app node that serves ``key`` cheapest; no I/O."""
        return None

    def batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        results: list[Any] = []
        for op in ops:
            try:
                results.append(op.apply(self))
            except StoreError as exc:
                results.append(exc)
        return results

    def stats(self) -> dict[str, Any]:
        """Counters for the status page (sessions, hits, misses …)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has none."""


class AsyncStore(abc.ABC):
    """A non-blocking store, for ASGI servers. Same methods, awaited."""

    nodes: frozenset[str] = frozenset()

    @abc.abstractmethod
    async def get(
        self, key: str, *, node: str | None = None, touch: float | None = None
    ) -> Record | None: ...

    @abc.abstractmethod
    async def write(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float,
        version: Hashable | None,
        node: str | None = None,
    ) -> Stored | None: ...

    @abc.abstractmethod
    async def add(self, key: str, value: bytes, *, ttl: float, node: str | None = None) -> bool: ...

    @abc.abstractmethod
    async def delete(self, key: str, *, node: str | None = None) -> None: ...

    @abc.abstractmethod
    async def touch(self, key: str, *, ttl: float, node: str | None = None) -> bool: ...

    def place(self, key: str) -> str | None:
        return None

    def preferred_route(self, key: str) -> str | None:
        return None

    async def batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        results: list[Any] = []
        for op in ops:
            try:
                results.append(await op.apply(self))
            except StoreError as exc:
                results.append(exc)
        return results

    def stats(self) -> dict[str, Any]:
        return {}

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has none."""


class OperationStore(Store):
    """A store that answers one operation at a time through ``execute``.

    Network stores route every call through the same machinery as ``batch``; the five
    interface methods only say which operation they are, so they are written here once
    and such a store implements ``execute`` (and ``batch``) alone.
    """

    @abc.abstractmethod
    def execute(self, op: StoreOp) -> Any:
        """Answer one operation; a failure raises ``StoreError``."""

    def get(
        self, key: str, *, node: str | None = None, touch: float | None = None
    ) -> Record | None:
        return self.execute(Get(key=key, node=node, touch=touch))  # type: ignore[no-any-return]

    def write(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float,
        version: Hashable | None,
        node: str | None = None,
    ) -> Stored | None:
        op = Write(key=key, value=value, ttl=ttl, version=version, node=node)
        return self.execute(op)  # type: ignore[no-any-return]

    def add(self, key: str, value: bytes, *, ttl: float, node: str | None = None) -> bool:
        return bool(self.execute(Add(key=key, value=value, ttl=ttl, node=node)))

    def delete(self, key: str, *, node: str | None = None) -> None:
        self.execute(Delete(key=key, node=node))

    def touch(self, key: str, *, ttl: float, node: str | None = None) -> bool:
        return bool(self.execute(Touch(key=key, ttl=ttl, node=node)))


class AsyncOperationStore(AsyncStore):
    """``OperationStore`` for async stores: implement ``execute`` (awaited) and ``batch``."""

    @abc.abstractmethod
    async def execute(self, op: StoreOp) -> Any:
        """Answer one operation; a failure raises ``StoreError``."""

    async def get(
        self, key: str, *, node: str | None = None, touch: float | None = None
    ) -> Record | None:
        return await self.execute(Get(key=key, node=node, touch=touch))  # type: ignore[no-any-return]

    async def write(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float,
        version: Hashable | None,
        node: str | None = None,
    ) -> Stored | None:
        op = Write(key=key, value=value, ttl=ttl, version=version, node=node)
        return await self.execute(op)  # type: ignore[no-any-return]

    async def add(self, key: str, value: bytes, *, ttl: float, node: str | None = None) -> bool:
        return bool(await self.execute(Add(key=key, value=value, ttl=ttl, node=node)))

    async def delete(self, key: str, *, node: str | None = None) -> None:
        await self.execute(Delete(key=key, node=node))

    async def touch(self, key: str, *, ttl: float, node: str | None = None) -> bool:
        return bool(await self.execute(Touch(key=key, ttl=ttl, node=node)))


class BlockingStoreAdapter(AsyncOperationStore):
    """Serve the async interface from a sync store.

    For an in-process store (``memory``) each call finishes in microseconds, so it is
    called inline: a thread hop would cost more than the work. For a store that does
    network I/O pass ``in_thread=True`` so the event loop never blocks on a socket.
    """

    def __init__(self, store: Store, *, in_thread: bool = False) -> None:
        self.store = store
        self.nodes = store.nodes
        self._in_thread = in_thread

    async def _run(self, function: Any, *args: Any) -> Any:
        if self._in_thread:
            return await asyncio.to_thread(function, *args)
        return function(*args)

    async def execute(self, op: StoreOp) -> Any:
        return await self._run(op.apply, self.store)

    def place(self, key: str) -> str | None:
        return self.store.place(key)

    def preferred_route(self, key: str) -> str | None:
        return self.store.preferred_route(key)

    async def batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        # The sync store's own batch may pipeline: hand it the whole list at once.
        return await self._run(self.store.batch, list(ops))  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return self.store.stats()

    async def aclose(self) -> None:
        self.store.close()
