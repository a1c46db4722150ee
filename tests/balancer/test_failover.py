"""Nodes dying under the balancer: ``kill -9`` under load, retries, and sticky routes.

These tests start their own nodes (they kill them), the real demo node where sessions
matter, and run with both the embedded balancer and nginx.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.balancer.conftest import (
    BalancerFactory,
    ClosedNode,
    demo_node_process,
    start_all,
    upstream_process,
)
from tests.servers import ManagedProcess, ProcessPool


def test_kill_9_of_a_node_under_get_load_gives_no_client_error(
    server_pool: ProcessPool, balancer_factory: BalancerFactory
) -> None:
    node1, node2 = start_all(
        server_pool,
        [demo_node_process("node1", server_pool.log_dir),
         demo_node_process("node2", server_pool.log_dir)],
    )  # fmt: skip
    balancer = balancer_factory([node1, node2])
    lock = threading.Lock()
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    served_after_kill: Counter[str] = Counter()
    killed = threading.Event()
    deadline = time.monotonic() + 30

    def client(_: int) -> None:
        with httpx.Client(base_url=balancer.url, timeout=10) as http:
            for _ in range(150):  # bounded in count and in time
                if time.monotonic() > deadline:
                    return
                was_killed = killed.is_set()
                try:
                    response = http.get("/api/session")
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(repr(exc))
                    continue
                with lock:
                    statuses[response.status_code] += 1
                    if was_killed and response.status_code == 200:
                        served_after_kill[response.json()["node"]] += 1

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, i) for i in range(4)]
        while sum(statuses.values()) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        node1.kill()
        killed.set()
        for future in futures:
            future.result()
    assert errors == []
    assert statuses == Counter({200: 600})
    assert served_after_kill["node2"] >= 300
    assert served_after_kill["node1"] == 0


def _in_flight_on_a_killed_node(
    server_pool: ProcessPool, balancer_factory: BalancerFactory, method: str
) -> tuple[list[int], dict[str, int]]:
    """Send two slow requests (one per node, round robin), kill n1 while both are in flight.

    Returns the two statuses and the requests n2 saw.
    """
    n1, n2 = start_all(
        server_pool,
        [upstream_process("n1", server_pool.log_dir), upstream_process("n2", server_pool.log_dir)],
    )
    balancer = balancer_factory([n1, n2])

    def send(_: int) -> int:
        body = b"x" if method in ("POST", "PUT") else None
        url = f"{balancer.url}/sleep?s=1.5"
        return httpx.request(method, url, content=body, timeout=10).status_code

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(send, 0)
        time.sleep(0.2)
        second = pool.submit(send, 1)
        time.sleep(0.5)
        n1.kill()
        statuses = sorted([first.result(), second.result()])
    return statuses, httpx.get(f"{n2.url}/count", timeout=5).json()


def test_post_in_flight_on_a_killed_node_is_not_retried(
    server_pool: ProcessPool, balancer_factory: BalancerFactory
) -> None:
    statuses, seen_by_n2 = _in_flight_on_a_killed_node(server_pool, balancer_factory, "POST")
    assert statuses[0] == 200
    assert statuses[1] in (502, 503)
    assert seen_by_n2["POST /sleep"] == 1  # the POST that hit n1 was not replayed


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_idempotent_request_in_flight_on_a_killed_node_is_retried(
    server_pool: ProcessPool, balancer_factory: BalancerFactory, method: str
) -> None:
    statuses, seen_by_n2 = _in_flight_on_a_killed_node(server_pool, balancer_factory, method)
    assert statuses == [200, 200]
    assert seen_by_n2[f"{method} /sleep"] == 2  # its own request and n1's, replayed


def test_sticky_keeps_a_session_on_its_route_and_moves_it_when_its_node_dies(
    server_pool: ProcessPool, balancer_factory: BalancerFactory
) -> None:
    nodes = start_all(
        server_pool,
        [demo_node_process("node1", server_pool.log_dir),
         demo_node_process("node2", server_pool.log_dir)],
    )  # fmt: skip
    balancer = balancer_factory(nodes, policy="sticky")
    with httpx.Client(base_url=balancer.url, timeout=10) as http:
        first = http.get("/api/session").json()
        home = first["node"]
        assert first["session_id"].endswith(f".{home}")
        # Round robin would alternate nodes and the in-memory count would restart.
        counts = [http.get("/api/session").json() for _ in range(10)]
        assert [c["node"] for c in counts] == [home] * 10
        assert [c["count"] for c in counts] == list(range(2, 12))

        next(n for n in nodes if n.name == home).kill()
        other = next(n.name for n in nodes if n.name != home)
        moved = http.get("/api/session").json()
        assert moved["node"] == other
        assert moved["session_id"].endswith(f".{other}")  # the node re-issued the route
        after = [http.get("/api/session").json()["node"] for _ in range(5)]
        assert after == [other] * 5


def test_post_goes_on_when_a_node_refuses_the_connection(
    upstreams: dict[str, ManagedProcess], balancer_factory: BalancerFactory
) -> None:
    """Nothing reached a node that refused to connect, so even POST may go to the next."""
    dead = ClosedNode("dead")
    balancer = balancer_factory([dead, upstreams["n1"]])  # type: ignore[list-item]
    before = httpx.get(f"{upstreams['n1'].url}/count", timeout=5).json().get("POST /echo", 0)
    answers = [httpx.post(f"{balancer.url}/echo", content=b"hi", timeout=10) for _ in range(4)]
    assert [(a.status_code, a.content) for a in answers] == [(200, b"hi")] * 4
    after = httpx.get(f"{upstreams['n1'].url}/count", timeout=5).json()["POST /echo"]
    assert after - before == 4


def test_a_restarted_node_rejoins(
    server_pool: ProcessPool, balancer_factory: BalancerFactory
) -> None:
    n1, n2 = start_all(
        server_pool,
        [upstream_process("n1", server_pool.log_dir), upstream_process("n2", server_pool.log_dir)],
    )
    balancer = balancer_factory([n1, n2], "--fail-timeout", "1", "--health-interval", "0.2")
    with httpx.Client(base_url=balancer.url, timeout=10) as http:
        n1.kill()
        assert {http.get("/name").text for _ in range(6)} == {"n2"}
        n1.restart()  # same port, new process
        deadline = time.monotonic() + 10
        served: set[str] = set()
        while served != {"n1", "n2"} and time.monotonic() < deadline:
            served.add(http.get("/name").text)
            time.sleep(0.05)
    assert served == {"n1", "n2"}


class GarbageNode:
    """A "node" that answers every request with a malformed response head."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # the socket closes at the end of the test
            while True:
                conn, _ = self._server.accept()
                with conn:
                    conn.settimeout(5)
                    data = b""
                    while b"\r\n\r\n" not in data and (more := conn.recv(4096)):
                        data += more
                    conn.sendall(b"HTTP/1.1 200 OK\r\nno colon in this line\r\n\r\n")

    def close(self) -> None:
        self._server.close()


def test_a_malformed_response_is_retried_on_another_node(
    upstreams: dict[str, ManagedProcess], balancer_factory: BalancerFactory
) -> None:
    garbage = GarbageNode("bad")
    try:
        balancer = balancer_factory([garbage, upstreams["n1"]])  # type: ignore[list-item]
        answers = [httpx.get(f"{balancer.url}/name", timeout=10) for _ in range(4)]
    finally:
        garbage.close()
    assert [(a.status_code, a.text) for a in answers] == [(200, "n1")] * 4
