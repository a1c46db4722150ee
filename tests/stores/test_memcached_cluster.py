"""The memcached store in a cluster: real app nodes (uvicorn, gunicorn) on real memcached.

These are the "done when" checks of the memcached store (SPEC §7 items 1, 3, 4): every
app node is a separate server process, every memcached a real one that tests kill -9.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sessionshare.core.ids import parse_session_id
from sessionshare.stores.memcached import backup_key
from tests.conftest import MemcachedFactory, ProcessFactory
from tests.servers import ManagedProcess, MemcachedServer
from tests.stores.conftest import node_list, peek
from tests.threads import in_background, run_in_threads
from tests.web.conftest import REPO, server_argv

# ``sessionshare node`` without the rest of the command group: the node command is the
# same code, and these tests then do not depend on unrelated subcommands importing.
NODE_COMMAND = [
    sys.executable,
    "-c",
    "import sys; from sessionshare.cli.node import node_command; node_command(sys.argv[1:])",
]
Start = Callable[..., ManagedProcess]


@pytest.fixture
def start_node(process_factory: ProcessFactory) -> Start:
    """``start_node(name, server, nodes, app="demo"|"test", **options)``: one app node.

    ``demo`` is the SPEC §6 demo through ``sessionshare node``; ``test`` is
    tests/web/apps.py, whose ``?sleep=`` holds a request (and its lock) open.
    """

    def start(
        name: str, server: str, nodes: str, app: str = "demo", **options: str
    ) -> ManagedProcess:
        settings = {"store": "memcached", "nodes": nodes, "route": name, **options}
        env = {**os.environ, **{f"SESSIONSHARE_{k.upper()}": v for k, v in settings.items()}}
        if app == "demo":
            argv = [*NODE_COMMAND, "--name", name, "--port", "{port}", "--server", server]
        else:
            argv = server_argv(server)
        return process_factory(argv, name=name, env=env, cwd=REPO, ready_path="/healthz")

    return start


def cookie(sid: str) -> dict[str, str]:
    return {"Cookie": f"SESSIONID={sid}"}


def visit(node: ManagedProcess, sid: str | None, path: str = "/api/session") -> dict[str, Any]:
    response = httpx.get(f"{node.url}{path}", headers=cookie(sid) if sid else {}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def two_copies(servers: list[MemcachedServer], sid: str) -> bool:
    """The session's primary copy is on the node its id names, its backup on the other."""
    parsed = parse_session_id(sid)
    assert parsed is not None and parsed.node is not None
    key = f"sessionshare:s:{parsed.token}"
    index = int(parsed.node[1:]) - 1
    other = servers[1 - index]
    return (
        peek(servers[index], key) is not None
        and peek(other, backup_key(parsed.node, key)) is not None
    )


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_alternating_nodes_keep_counts_sequential(
    server: str, memcached_factory: MemcachedFactory, start_node: Start
) -> None:
    servers = memcached_factory(2)
    nodes = [start_node(f"node{i}", server, node_list(servers)) for i in (1, 2)]
    for client in range(6):
        sid = None
        for i in range(20):
            body = visit(nodes[(client + i) % 2], sid)
            assert body["count"] == i + 1, f"client {client} request {i}: {body}"
            assert body["node"] == f"node{(client + i) % 2 + 1}"
            if sid is not None:  # the token never changes; the route follows the node
                assert parse_session_id(body["session_id"]).token == parse_session_id(sid).token  # type: ignore[union-attr]
            sid = body["session_id"]
    assert {parse_session_id(sid).node for sid in [sid]} <= {"n1", "n2"}  # type: ignore[union-attr]


def test_killed_memcached_primary_relocates_then_regains_two_copies(
    memcached_factory: MemcachedFactory, start_node: Start
) -> None:
    servers = memcached_factory(2)
    # one ASGI and one WSGI node in the same cluster: both drivers share the sessions
    nodes = [
        start_node("node1", "uvicorn", node_list(servers)),
        start_node("node2", "gunicorn", node_list(servers)),
    ]
    sids: list[str] = []
    for client in range(12):
        sid = None
        for i in range(3):
            sid = visit(nodes[(client + i) % 2], sid)["session_id"]
        sids.append(sid)  # type: ignore[arg-type]
    on_n1 = [sid for sid in sids if sid.split("-")[1].startswith("n1")]
    assert on_n1 and len(on_n1) < len(sids), "placement should spread sessions over both"
    assert all(two_copies(servers, sid) for sid in sids)

    servers[0].kill()
    for index, sid in enumerate(sids):
        for i in range(3):
            body = visit(nodes[(index + i) % 2], sid)
            assert body["count"] == 4 + i, f"session {sid} reset or lost an update: {body}"
            sid = body["session_id"]
        assert parse_session_id(sid).node == "n2"  # type: ignore[union-attr]
        sids[index] = sid

    servers[0].start().wait_ready()  # same port, empty
    deadline = time.monotonic() + 20
    while not all(two_copies(servers, sid) for sid in sids):
        assert time.monotonic() < deadline, "sessions did not get their second copy back"
        time.sleep(0.25)
    for index, sid in enumerate(sids):  # and they still count on
        assert visit(nodes[index % 2], sid)["count"] == 7


@pytest.mark.parametrize(
    ("locking", "server"),
    [("all", "uvicorn"), ("auto", "gunicorn"), ("all", "gunicorn"), ("auto", "uvicorn")],
)
def test_parallel_increments_with_locking_lose_nothing(
    locking: str, server: str, memcached_factory: MemcachedFactory, start_node: Start
) -> None:
    servers = memcached_factory(2)
    nodes = [start_node(f"node{i}", server, node_list(servers), locking=locking) for i in (1, 2)]
    sid = visit(nodes[0], None)["session_id"]  # count 1
    errors: list[str] = []

    def client(number: int) -> None:
        with httpx.Client(timeout=30) as http:
            for i in range(25):
                node = nodes[(number + i) % 2]
                response = http.get(f"{node.url}/api/session", headers=cookie(sid))
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:100]}")

    run_in_threads([lambda n=n: client(n) for n in range(8)], timeout=120)
    assert not errors
    assert visit(nodes[1], sid, "/api/session?peek=1")["count"] == 201  # 1 + 8 x 25


def test_disjoint_changes_both_survive_without_locks(
    memcached_factory: MemcachedFactory, start_node: Start
) -> None:
    servers = memcached_factory(2)
    nodes = [
        start_node(f"node{i}", "uvicorn", node_list(servers), app="test", locking="none")
        for i in (1, 2)
    ]
    first = httpx.post(f"{nodes[0].url}/set", json={"start": 0}, timeout=10).json()["id"]

    def change(node: ManagedProcess, attribute: str) -> int:
        response = httpx.post(
            f"{node.url}/set?sleep=0.5", json={attribute: 1}, headers=cookie(first), timeout=10
        )
        return response.status_code

    results = run_in_threads(
        [lambda: change(nodes[0], "a"), lambda: change(nodes[1], "b")], timeout=30
    )
    assert results == [200, 200]
    data = httpx.get(f"{nodes[0].url}/get", headers=cookie(first), timeout=10).json()["data"]
    assert data == {"start": 0, "a": 1, "b": 1}


def test_lock_held_past_lock_timeout_answers_503_and_writes_nothing(
    memcached_factory: MemcachedFactory, start_node: Start
) -> None:
    servers = memcached_factory(2)
    options = {"locking": "all", "lock_timeout": "300ms", "app": "test"}
    nodes = [start_node(f"node{i}", "gunicorn", node_list(servers), **options) for i in (1, 2)]
    sid = httpx.post(f"{nodes[0].url}/set", json={"count": 1}, timeout=10).json()["id"]
    url = f"{nodes[0].url}/incr?sleep=1.5"
    with in_background(lambda: httpx.post(url, headers=cookie(sid), timeout=10), timeout=30) as h:
        time.sleep(0.5)  # the holder has the lock now
        blocked = httpx.post(f"{nodes[1].url}/incr", headers=cookie(sid), timeout=10)
    assert h.join(0).status_code == 200
    assert blocked.status_code == 503
    assert blocked.headers["retry-after"] == "1"
    final = httpx.get(f"{nodes[1].url}/get", headers=cookie(sid), timeout=10).json()["data"]
    assert final["count"] == 2  # only the holder's increment


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_all_memcached_nodes_dead_gives_a_clear_503_in_bounded_time(
    server: str, memcached_factory: MemcachedFactory, start_node: Start
) -> None:
    servers = memcached_factory(3)
    node = start_node("node1", server, node_list(servers), operation_timeout="500ms")
    sid = visit(node, None)["session_id"]
    for memcached in servers:
        memcached.kill()
    for _ in range(3):
        started = time.monotonic()
        response = httpx.get(f"{node.url}/api/session", headers=cookie(sid), timeout=30)
        assert time.monotonic() - started < 10  # a liveness bound, not a speed target
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "memcached" in response.text
