"""The memcached store against real memcached processes: versions, copies, failover.

Each test checks what memcached really holds with an independent client (pymemcache),
not only what our store answers.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from sessionshare.config import SessionConfig
from sessionshare.core.ids import new_token
from sessionshare.core.operations import Add, Delete, Get, Record, Stored, Write
from sessionshare.errors import ConfigError, StoreError, StoreUnavailable
from sessionshare.stores.memcached import (
    AsyncMemcachedStore,
    MemcachedStore,
    NodeState,
    backup_key,
    cluster_from_config,
)
from sessionshare.stores.memcached_protocol import expiry
from tests.conftest import MemcachedFactory
from tests.servers import MemcachedServer
from tests.stores.conftest import make_store, node_list, peek

Pair = tuple[MemcachedStore, list[MemcachedServer]]


def session_key() -> str:
    return f"sessionshare:s:{new_token()}"


def test_ttl_rounds_up_and_long_ttls_become_absolute() -> None:
    # never 0 (memcached reads it as "never expires"), and one tick more: memcached's
    # clock ticks per second, so "1" may last only a moment
    assert expiry(0.3, now=1000.0) == 2
    assert expiry(1.2, now=1000.0) == 3
    assert expiry(31 * 86400, now=1000.0) == 1000 + 31 * 86400 + 1  # > 30 days: unix time


def test_write_is_a_real_cas_and_add(two_nodes: Pair) -> None:
    store, servers = two_nodes
    key = session_key()
    first = store.write(key, b"v1", ttl=60, version=None, node="n1")
    assert isinstance(first, Stored) and first.node == "n1"
    assert store.write(key, b"again", ttl=60, version=None, node="n1") is None  # add: taken
    record = store.get(key, node="n1")
    assert record == Record(b"v1", first.version, "n1")
    second = store.write(key, b"v2", ttl=60, version=record.version, node="n1")
    assert second is not None and second.version != first.version
    assert store.write(key, b"stale", ttl=60, version=record.version, node="n1") is None
    assert peek(servers[0], key) == b"v2"
    # the conflict repaired the backup: it holds the winner, not the losing write
    assert peek(servers[1], backup_key("n1", key)) == b"v2"
    assert store.stats()["nodes"]["n1"]["conflicts"] == 2


def test_backup_lives_on_the_next_node_and_delete_removes_both(two_nodes: Pair) -> None:
    store, servers = two_nodes
    key = session_key()
    store.write(key, b"data", ttl=60, version=None, node="n2")
    assert peek(servers[1], key) == b"data"
    assert peek(servers[0], backup_key("n2", key)) == b"data"  # n2's next node wraps to n1
    store.delete(key, node="n2")
    assert peek(servers[1], key) is None and peek(servers[0], backup_key("n2", key)) is None


def test_locks_are_single_copies_that_expire_even_below_one_second(two_nodes: Pair) -> None:
    store, servers = two_nodes
    lock = f"sessionshare:lock:{new_token()}"
    assert store.add(lock, b"me", ttl=0.3, node="n1") is True
    assert store.add(lock, b"other", ttl=0.3, node="n1") is False
    assert peek(servers[1], backup_key("n1", lock)) is None
    assert store.stats()["nodes"]["n1"]["lock_waits"] == 1
    deadline = time.monotonic() + 5
    while peek(servers[0], lock) is not None:  # rounded up to 1 s, not down to "forever"
        assert time.monotonic() < deadline, "lock with a 0.3 s TTL never expired"
        time.sleep(0.2)


def test_ttl_over_30_days_is_kept(two_nodes: Pair) -> None:
    store, servers = two_nodes
    key = session_key()
    store.write(key, b"long", ttl=40 * 86400, version=None, node="n1")
    assert peek(servers[0], key) == b"long"  # sent relative, it would have expired at once


def test_batches_cost_one_round_trip(two_nodes: Pair) -> None:
    store, _ = two_nodes
    key, lock = session_key(), f"sessionshare:lock:{new_token()}"
    stored = store.write(key, b"v1", ttl=60, version=None, node="n1")
    assert stored is not None
    trips = store.cluster.io.exchanges
    locked, record = store.batch(
        [Add(key=lock, value=b"me", ttl=1, node="n1"), Get(key=key, node="n1", touch=60)]
    )
    assert locked is True and record.value == b"v1"
    assert store.cluster.io.exchanges == trips + 1  # lock + read (backup known fresh)
    written, _ = store.batch(
        [
            Write(key=key, value=b"v2", ttl=60, version=record.version, node="n1"),
            Delete(key=lock, node="n1"),
        ]
    )
    assert isinstance(written, Stored)
    assert store.cluster.io.exchanges == trips + 2  # cas + backup + unlock
    store.get(key, node="n1", touch=60)
    assert store.cluster.io.exchanges == trips + 3  # read-only: one gat


def ttl_left(server: MemcachedServer, key: str) -> int | None:
    """Seconds ``key`` has left on one memcached (a raw ``mg <key> t``), ``None`` if absent."""
    with socket.create_connection(server.addr, timeout=2) as sock:
        sock.sendall(f"mg {key} t\r\n".encode())
        reply = sock.recv(256).split()
    return int(reply[1][1:]) if reply[0] == b"HD" else None


def test_read_of_a_fresh_session_goes_to_one_node_until_the_backup_needs_its_ttl(
    two_nodes: Pair,
) -> None:
    store, servers = two_nodes
    io, now = store.cluster.io, [1000.0]
    store.cluster.fresh.clock = lambda: now[0]
    key, lock = session_key(), f"sessionshare:lock:{new_token()}"
    assert store.write(key, b"v1", ttl=60, version=None, node="n1") is not None
    trips, sends = io.exchanges, io.sends
    assert store.get(key, node="n1", touch=60).value == b"v1"
    assert (io.exchanges, io.sends) == (trips + 1, sends + 1)  # the primary only
    locked, record = store.batch(
        [Add(key=lock, value=b"me", ttl=1, node="n1"), Get(key=key, node="n1", touch=60)]
    )
    assert locked is True and record.value == b"v1"
    assert (io.exchanges, io.sends) == (trips + 2, sends + 2)  # lock + read: n1 only
    fraction = store.cluster.fresh.fraction
    now[0] += 60 * fraction - 0.1  # the write gave the backup 60 s: fresh for a fraction
    store.get(key, node="n1", touch=600)
    assert io.sends == sends + 3
    assert ttl_left(servers[1], backup_key("n1", key)) <= 61  # untouched
    now[0] += 0.2  # past the window: this read refreshes the backup with the primary
    store.get(key, node="n1", touch=600)
    assert (io.exchanges, io.sends) == (trips + 4, sends + 5)
    assert ttl_left(servers[1], backup_key("n1", key)) > 590
    store.get(key, node="n1", touch=600)  # ... and records that: fresh again
    assert io.sends == sends + 6
    now[0] += 600 * fraction + 1  # the touch gave the backup 600 s
    store.get(key, node="n1", touch=600)
    assert io.sends == sends + 8


def test_backups_are_touched_again_after_a_conflict_a_delete_or_a_returning_node(
    two_nodes: Pair,
) -> None:
    store, servers = two_nodes
    io, fresh = store.cluster.io, store.cluster.fresh
    key = session_key()
    first = store.write(key, b"v1", ttl=60, version=None, node="n1")
    assert first is not None and fresh.fresh(key, "n1", "n2")
    assert store.write(key, b"v2", ttl=60, version=first.version, node="n1") is not None
    assert store.write(key, b"lost", ttl=60, version=first.version, node="n1") is None
    assert not fresh.fresh(key, "n1", "n2")  # the repair gave the backup the primary's TTL
    sends = io.sends
    store.get(key, node="n1", touch=60)
    store.get(key, node="n1", touch=60)
    assert io.sends == sends + 3  # touched once, then known fresh
    store.delete(key, node="n1")
    assert len(fresh) == 0
    key = session_key()
    store.write(key, b"v1", ttl=60, version=None, node="n1")
    assert fresh.fresh(key, "n1", "n2")
    runs = store.cluster.rereplicator.runs
    servers[1].restart()  # the backup node comes back empty: re-replication rewrites it
    deadline = time.monotonic() + 15
    while (
        store.cluster.rereplicator.runs == runs or peek(servers[1], backup_key("n1", key)) is None
    ):
        assert time.monotonic() < deadline, "the restarted backup node was not re-replicated"
        time.sleep(0.1)
    while len(fresh):  # cleared again when the pass ends
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sends = io.sends
    assert store.get(key, node="n1", touch=60).value == b"v1"
    assert io.sends == sends + 2  # nothing is known fresh after a node returned


def test_dead_primary_relocates_to_the_backup_and_backs_up_again(
    memcached_factory: MemcachedFactory,
) -> None:
    servers = memcached_factory(3)
    store = make_store(servers)
    try:
        key = session_key()
        store.write(key, b"precious", ttl=60, version=None, node="n1")
        servers[0].kill()
        record = store.get(key, node="n1", touch=60)
        assert record is not None and record.value == b"precious" and record.node == "n2"
        assert peek(servers[1], key) == b"precious"  # n2 is the primary now
        assert peek(servers[2], backup_key("n2", key)) == b"precious"  # and n3 its backup
        assert peek(servers[1], backup_key("n1", key)) is None  # old backup dropped
        assert store.cluster.health.state["n1"] is NodeState.DOWN
        stored = store.write(key, b"newer", ttl=60, version=record.version, node="n2")
        assert stored == Stored(stored.version, "n2") if stored else False
        assert store.stats()["nodes"]["n2"]["relocations"] == 1
    finally:
        store.close()


def test_restarted_primary_is_restored_from_the_backup(two_nodes: Pair) -> None:
    store, servers = two_nodes
    key = session_key()
    store.write(key, b"keep me", ttl=60, version=None, node="n1")
    servers[0].restart()  # same port, empty
    # The background probe may have caught n1 mid-restart and marked it down; the store then
    # (correctly) relocates instead. This test is about the restore path: wait for n1 to be up.
    deadline = time.monotonic() + 10
    while store.cluster.health.state["n1"] is NodeState.DOWN and time.monotonic() < deadline:
        time.sleep(0.05)
    record = store.get(key, node="n1", touch=60)
    assert record is not None and record.value == b"keep me" and record.node == "n1"
    assert peek(servers[0], key) == b"keep me"


def test_returning_node_gets_second_copies_back(memcached_factory: MemcachedFactory) -> None:
    servers = memcached_factory(2)
    config = SessionConfig.load(environ={}, store="memcached", nodes=node_list(servers))
    cluster = cluster_from_config(config)
    cluster.health.interval = 0.2
    store = MemcachedStore(cluster)
    try:
        keys = {session_key(): node for node in ("n1", "n2") for _ in range(5)}
        for key, node in keys.items():
            store.write(key, key.encode(), ttl=300, version=None, node=node)
        servers[0].kill()
        moved = {}
        for key, node in keys.items():  # n1's sessions move to n2, with no backup possible
            record = store.get(key, node=node, touch=300)
            assert record is not None and record.value == key.encode()
            moved[key] = record.node
        assert set(moved.values()) == {"n2"}
        servers[0].start().wait_ready()  # back, empty: every session has one copy
        deadline = time.monotonic() + 15
        while True:
            missing = [k for k in keys if peek(servers[0], backup_key("n2", k)) != k.encode()]
            if not missing:
                break
            assert time.monotonic() < deadline, f"{len(missing)} sessions still have one copy"
            time.sleep(0.2)
        assert all(peek(servers[1], k) == k.encode() for k in keys)
        assert store.stats()["rereplicated"] >= len(keys)
    finally:
        store.close()


def test_all_nodes_down_fails_fast_with_a_store_error(memcached_factory: MemcachedFactory) -> None:
    servers = memcached_factory(3)
    store = make_store(servers)
    try:
        key = session_key()
        store.write(key, b"x", ttl=60, version=None, node="n1")
        for server in servers:
            server.kill()
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(StoreUnavailable, match="no memcached node"):
                store.get(key, node="n1", touch=60)
        assert time.monotonic() - started < 10  # bounded: the failover walk never loops
    finally:
        store.close()


def test_hung_node_is_suspect_then_down_after_a_probe(memcached_factory: MemcachedFactory) -> None:
    servers = memcached_factory(2)
    store = make_store(servers, operation_timeout="300ms")
    try:
        key = session_key()
        store.write(key, b"x", ttl=60, version=None, node="n1")
        servers[0].pause()
        record = store.get(key, node="n1", touch=60)  # times out, served from the backup
        assert record is not None and record.value == b"x" and record.node == "n2"
        deadline = time.monotonic() + 5
        while store.cluster.health.state["n1"] is not NodeState.DOWN:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        servers[0].resume()
        store.close()


@pytest.mark.parametrize(
    ("nodes", "named"),
    [
        ("n1:127.0.0.1:11211 n2:127.0.0.1", "n2:127.0.0.1"),
        ("n1:127.0.0.1:11211,bad id:127.0.0.1:11212", "bad"),
        ("n1:127.0.0.1:11211 n1:127.0.0.1:11212", "twice"),
        ("n1:127.0.0.1:99999", "range"),
        ("", "node list"),
    ],
)
def test_malformed_node_list_fails_at_start_up_naming_the_part(nodes: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        cluster_from_config(SessionConfig.load(environ={}, store="memcached", nodes=nodes))


def test_single_host_port_and_failover_rules() -> None:
    def load(**options: str | bool) -> SessionConfig:
        return SessionConfig.load(environ={}, store="memcached", **options)

    assert cluster_from_config(load(nodes="127.0.0.1:11211")).order == ["n1"]
    with pytest.raises(ConfigError, match="two nodes"):
        cluster_from_config(load(nodes="127.0.0.1:11211", sticky=True, failover_nodes="n1"))
    with pytest.raises(ConfigError, match="sticky"):
        load(nodes="n1:127.0.0.1:1 n2:127.0.0.1:2", failover_nodes="n2")
    with pytest.raises(ConfigError, match="not one of"):
        cluster_from_config(
            load(nodes="n1:127.0.0.1:1 n2:127.0.0.1:2", sticky=True, failover_nodes="n3")
        )


def test_failover_node_is_used_only_when_the_others_are_down(
    memcached_factory: MemcachedFactory,
) -> None:
    servers = memcached_factory(3)
    store = make_store(servers, sticky=True, failover_nodes="n3")
    try:
        assert {store.place(session_key()) for _ in range(50)} == {"n1", "n2"}
        key = session_key()
        servers[0].kill()
        stored = store.write(key, b"x", ttl=60, version=None, node="n1")
        assert stored is not None and stored.node == "n2"  # not the failover node
        servers[1].kill()
        stored = store.write(key, b"y", ttl=60, version=None, node="n2")
        assert stored is not None and stored.node == "n3"
        assert peek(servers[2], key) == b"y"
    finally:
        store.close()


def test_async_store_runs_the_same_plans(two_nodes: Pair) -> None:
    store, servers = two_nodes
    astore = AsyncMemcachedStore(store.cluster)

    async def scenario() -> None:
        key = session_key()
        stored = await astore.write(key, b"a1", ttl=60, version=None, node="n1")
        assert stored is not None
        locked, record = await astore.batch(
            [Add(key=key + "L", value=b"1", ttl=1, node="n1"), Get(key=key, node="n1", touch=60)]
        )
        assert locked is True and record == Record(b"a1", stored.version, "n1")
        assert await astore.write(key, b"a2", ttl=60, version=record.version, node="n1")
        assert await astore.write(key, b"lost", ttl=60, version=record.version, node="n1") is None
        assert peek(servers[1], backup_key("n1", key)) == b"a2"
        await astore.aclose()

    asyncio.run(scenario())


def test_value_too_large_for_memcached_is_a_store_error(two_nodes: Pair) -> None:
    store, _ = two_nodes
    with pytest.raises(StoreError, match="too large"):
        store.write(session_key(), b"x" * (2 * 1024 * 1024), ttl=60, version=None, node="n1")
