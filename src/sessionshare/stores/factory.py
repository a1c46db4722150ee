"""Build the store named by the ``store`` option.

Stores that are planned but not built yet fail here, at start-up, with a clear
"not yet" error (``NotYetAvailable``) rather than at the first request.
"""

from __future__ import annotations

from sessionshare.config import SessionConfig
from sessionshare.errors import NotYetAvailable
from sessionshare.stores.base import AsyncStore, BlockingStoreAdapter, Store
from sessionshare.stores.memory import MemoryStore

__all__ = ["create_async_store", "create_store"]

_PLANNED = {
    "memcached": "the memcached store",
    "redis": "the Redis store",
    "replicated": "peer replication (replicated)",
    "backup": "peer replication (backup)",
}


def create_store(config: SessionConfig) -> Store:
    """A new store for ``config`` (the caller owns it and closes it)."""
    if config.store == "memory":
        return MemoryStore(max_entries=config.max_sessions)
    raise NotYetAvailable(
        f"store: {_PLANNED[config.store]} is not available yet in this version of "
        "sessionshare; use store = 'memory'"
    )


def create_async_store(config: SessionConfig) -> AsyncStore:
    """The async flavour of ``create_store``, for ASGI applications."""
    store = create_store(config)
    # The memory store never blocks, so it is called inline (no thread hop).
    return BlockingStoreAdapter(store, in_thread=not isinstance(store, MemoryStore))
