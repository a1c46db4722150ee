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
    "redis": "the Redis store",
}


def create_store(config: SessionConfig) -> Store:
    """A new store for ``config`` (the caller owns it and closes it)."""
    if config.store == "memory":
        return MemoryStore(max_entries=config.max_sessions)
    if config.store == "memcached":
        from sessionshare.stores.memcached import MemcachedStore, cluster_from_config

        return MemcachedStore(cluster_from_config(config))
    if config.store in ("replicated", "backup"):
        from sessionshare.replication import BackupStore, ReplicatedStore

        return (ReplicatedStore if config.store == "replicated" else BackupStore)(config)
    raise NotYetAvailable(
        f"store: {_PLANNED[config.store]} is not available yet in this version of "
        "sessionshare; use store = 'memory'"
    )


def create_async_store(config: SessionConfig) -> AsyncStore:
    """The async flavour of ``create_store``, for ASGI applications."""
    if config.store == "memcached":  # native asyncio: no thread hop per operation
        from sessionshare.stores.memcached import AsyncMemcachedStore, cluster_from_config

        return AsyncMemcachedStore(cluster_from_config(config))
    if config.store in ("replicated", "backup"):  # runs on the server's own event loop
        from sessionshare.replication import AsyncBackupStore, AsyncReplicatedStore

        kind = AsyncReplicatedStore if config.store == "replicated" else AsyncBackupStore
        return kind(config)
    store = create_store(config)
    # The memory store never blocks, so it is called inline (no thread hop).
    return BlockingStoreAdapter(store, in_thread=not isinstance(store, MemoryStore))
