"""Sticky mode on memcached: live sessions on the app node, backups in memcached.

The protocol tests drive ``SessionManager`` by hand (two managers sharing one generation
file stand for two worker processes of one app node); the last test runs the real thing:
two app nodes, each gunicorn with two worker processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionshare.config import SessionConfig
from sessionshare.core.ids import parse_session_id
from sessionshare.core.manager import RequestInfo, RequestSession, SessionManager
from sessionshare.core.sticky import LocalGenerations, SharedGenerations
from sessionshare.errors import StoreUnavailable
from sessionshare.runners import run_sync
from sessionshare.stores.memcached import MemcachedStore, cluster_from_config
from tests.conftest import MemcachedFactory, ProcessFactory
from tests.servers import MemcachedServer
from tests.stores.conftest import node_list, peek
from tests.threads import in_background
from tests.web.conftest import REPO

GUNICORN = str(Path(os.sys.executable).parent / "gunicorn")  # type: ignore[attr-defined]


class Worker:
    """One worker process's session manager, with a browser-like cookie."""

    def __init__(
        self, store: MemcachedStore, table: Any, route: str = "node1", **options: Any
    ) -> None:
        config = SessionConfig.load(
            environ={},
            store="memcached",
            sticky=True,
            route=route,
            nodes="x:127.0.0.1:1",
            **options,
        )
        self.store = store
        self.manager = SessionManager(
            config, nodes=store.nodes, place=store.place, generations=table
        )

    def open(self, sid: str | None) -> RequestSession:
        cookie = f"SESSIONID={sid}" if sid else None
        return run_sync(self.manager.open(RequestInfo("GET", "/", "http", cookie)), self.store)  # type: ignore[no-any-return]

    def save(self, state: RequestSession, *, backup: bool = True) -> list[str]:
        cookies: list[str] = run_sync(self.manager.save(state), self.store)
        if backup:
            run_sync(self.manager.backup(state), self.store)
        return cookies

    def incr(self, sid: str | None) -> tuple[str, int]:
        state = self.open(sid)
        state.session["count"] = state.session.get("count", 0) + 1
        self.save(state)
        return state.session.id, state.session["count"]


def sticky_store(servers: list[MemcachedServer], **options: Any) -> MemcachedStore:
    config = SessionConfig.load(
        environ={}, store="memcached", sticky=True, nodes=node_list(servers), **options
    )
    return MemcachedStore(cluster_from_config(config))


def test_sticky_reads_cost_no_round_trip_and_writes_back_up_after(
    memcached_factory: MemcachedFactory,
) -> None:
    servers = memcached_factory(2)
    store = sticky_store(servers)
    worker = Worker(store, LocalGenerations())
    sid, _ = worker.incr(None)
    trips = store.cluster.io.exchanges
    for _ in range(3):
        state = worker.open(sid)
        assert state.session["count"] == 1
        worker.save(state)
    assert store.cluster.io.exchanges == trips  # reads: served from the live local copy
    state = worker.open(sid)
    state.session["count"] = 2
    worker.save(state, backup=False)
    assert store.cluster.io.exchanges == trips  # the response needs no store trip
    run_sync(worker.manager.backup(state), store)
    assert store.cluster.io.exchanges == trips + 1  # one conditional write, one copy
    parsed = parse_session_id(sid)
    assert parsed is not None
    index = int(parsed.node[1:]) - 1  # type: ignore[index]
    assert peek(servers[index], f"sessionshare:s:{parsed.token}") is not None
    assert peek(servers[1 - index], f"bak:{parsed.node}:sessionshare:s:{parsed.token}") is None
    store.close()


def test_workers_of_one_node_never_serve_a_stale_copy(
    memcached_factory: MemcachedFactory, tmp_path: Path
) -> None:
    servers = memcached_factory(2)
    store = sticky_store(servers, operation_timeout="200ms")
    table_a = SharedGenerations(tmp_path / "node1.gen")
    table_b = SharedGenerations(tmp_path / "node1.gen")  # another process would map the same file
    a, b = Worker(store, table_a), Worker(store, table_b)
    sid, _ = a.incr(None)
    assert b.incr(sid)[1] == 2  # b loads from memcached (it has no copy)
    assert a.incr(sid)[1] == 3  # a's copy (count 1) is stale: the generation says so
    assert b.incr(sid)[1] == 4
    # a changes, b asks before a's backup is stored: b waits for it, then reads it
    state = a.open(sid)
    state.session["count"] = 5
    a.save(state, backup=False)

    def back_up_later() -> None:
        time.sleep(0.1)
        run_sync(a.manager.backup(state), store)

    with in_background(back_up_later, timeout=10):
        assert b.open(sid).session["count"] == 5
    # a backup that never comes: b refuses (503) rather than serve what it has
    state = a.open(sid)
    state.session["count"] = 6
    a.save(state, backup=False)
    with pytest.raises(StoreUnavailable, match="pending"):
        b.open(sid)
    assert a.open(sid).session["count"] == 6  # a itself holds the latest
    store.close()


def test_request_routed_from_another_node_loads_from_memcached_and_takes_the_route(
    memcached_factory: MemcachedFactory,
) -> None:
    servers = memcached_factory(2)
    store = sticky_store(servers)
    node1, node2 = (
        Worker(store, LocalGenerations(), "node1"),
        Worker(store, LocalGenerations(), "node2"),
    )
    sid, _ = node1.incr(None)
    sid, count = node2.incr(sid)  # failover: node2 has never seen it
    assert count == 2 and sid.endswith(".node2")
    state = node1.open(sid)  # back on node1: its local copy (count 1) must not be used
    assert state.session["count"] == 2
    cookies = node1.save(state)
    assert cookies and ".node1" in cookies[0]  # the route is rewritten (JvmRouteBinderValve)
    store.close()


def test_dead_memcached_node_makes_the_backup_relocate(memcached_factory: MemcachedFactory) -> None:
    servers = memcached_factory(2)
    store = sticky_store(servers)
    worker = Worker(store, LocalGenerations())
    sid, _ = worker.incr(None)
    parsed = parse_session_id(sid)
    assert parsed is not None and parsed.node is not None
    servers[int(parsed.node[1:]) - 1].kill()
    _, count = worker.incr(sid)  # served locally; the backup write fails over
    assert count == 2
    state = worker.open(sid)
    cookies = worker.save(state)
    moved = parse_session_id(state.session.id)
    assert moved is not None and moved.node != parsed.node and cookies  # new id sent
    survivor = servers[int(moved.node[1:]) - 1]  # type: ignore[index]
    assert peek(survivor, f"sessionshare:s:{parsed.token}") is not None
    store.close()


def test_two_nodes_with_two_workers_each_never_read_stale(
    memcached_factory: MemcachedFactory, process_factory: ProcessFactory
) -> None:
    servers = memcached_factory(2)
    nodes = {}
    for name in ("node1", "node2"):
        env = {
            **os.environ,
            "SESSIONSHARE_STORE": "memcached",
            "SESSIONSHARE_NODES": node_list(servers),
            "SESSIONSHARE_STICKY": "true",
            "SESSIONSHARE_ROUTE": name,
        }
        argv = [GUNICORN, "--workers", "2", "--bind", "127.0.0.1:{port}", "--log-level", "warning",
                "tests.stores.apps:wsgi_app()"]  # fmt: skip
        nodes[name] = process_factory(argv, name=name, env=env, cwd=REPO, ready_path="/healthz")
    http = httpx.Client(timeout=10)  # one client: building one per request costs ~15 ms
    sessions: dict[str, tuple[str, int]] = {}
    pids: dict[str, set[int]] = {"node1": set(), "node2": set()}
    for i in range(10):
        home = f"node{i % 2 + 1}"
        http.cookies.clear()  # a new session: send no cookie (explicit headers win later)
        body = http.get(f"{nodes[home].url}/incr").json()
        sessions[body["id"]] = (home, 1)
    for round_ in range(99):  # 10 + 990 = 1000 requests, sessions taking turns
        for sid in list(sessions):
            home, count = sessions.pop(sid)
            body = http.get(
                f"{nodes[home].url}/incr", headers={"Cookie": f"SESSIONID={sid}"}, timeout=10
            ).json()
            assert body["count"] == count + 1, f"stale read on {home} (round {round_}): {body}"
            pids[home].add(body["pid"])
            sessions[body["id"]] = (home, count + 1)
    assert all(len(p) == 2 for p in pids.values()), f"both workers should have served: {pids}"
    # failover to the other node once its backup is stored: it continues, not resets
    sid, (home, count) = next(iter(sessions.items()))
    token = parse_session_id(sid).token  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    other = "node2" if home == "node1" else "node1"
    while True:  # the backup lands just after the response (backup_async)
        headers = {"Cookie": f"SESSIONID={sid}"}
        body = http.get(f"{nodes[other].url}/peek", headers=headers).json()
        assert token in body["id"] and 0 < body["count"] <= count, body  # never a reset
        if body["count"] == count:
            break
        assert time.monotonic() < deadline, "the backup never reached memcached"
        time.sleep(0.05)
    assert body["id"].endswith(f".{other}")
    http.close()
