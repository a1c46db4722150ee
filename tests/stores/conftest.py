"""Helpers for the store tests: a direct memcached client to check what is really stored.

The checks read memcached with pymemcache, an independent client, so a bug in our own
protocol code cannot hide itself from the assertions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymemcache.client.base import Client

from sessionshare.config import SessionConfig
from sessionshare.stores.memcached import MemcachedStore, cluster_from_config
from tests.conftest import MemcachedFactory
from tests.servers import MemcachedServer


def node_list(servers: list[MemcachedServer]) -> str:
    return " ".join(f"n{i}:{s.address}" for i, s in enumerate(servers, 1))


def peek(server: MemcachedServer, key: str) -> bytes | None:
    """The bytes under ``key`` on one memcached, read with pymemcache (no_delay, replies)."""
    client = Client(server.addr, no_delay=True, default_noreply=False, connect_timeout=2, timeout=2)
    try:
        value: bytes | None = client.get(key)
        return value
    finally:
        client.close()


def make_store(servers: list[MemcachedServer], **options: Any) -> MemcachedStore:
    config = SessionConfig.load(environ={}, store="memcached", nodes=node_list(servers), **options)
    return MemcachedStore(cluster_from_config(config))


@pytest.fixture
def two_nodes(
    memcached_factory: MemcachedFactory,
) -> Iterator[tuple[MemcachedStore, list[MemcachedServer]]]:
    servers = memcached_factory(2)
    store = make_store(servers)
    try:
        yield store, servers
    finally:
        store.close()
