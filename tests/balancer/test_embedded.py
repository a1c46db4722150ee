"""What only the embedded balancer does: status JSON, active checks, pooling, hooks."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
import pytest

from sessionshare.balancer import Balancer, BalancerConfig, LocalRequest, LocalResponse
from sessionshare.balancer.config import HealthConfig, NodeSpec
from tests.balancer.conftest import BalancerFactory
from tests.servers import ManagedProcess

#: Overrides the builtin/nginx ``lb`` fixture: these features exist only in the embedded one.
builtin_only = pytest.mark.parametrize("lb", ["builtin"])


def wait_for(predicate: Any, what: Any, timeout: float = 10.0) -> None:
    """Poll (bounded) until ``predicate()``; generous because CI machines are shared."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not reached within {timeout}s: {what()}"
        time.sleep(0.05)


@builtin_only
def test_status_json_has_the_spec_shape_and_counts_requests(
    upstreams: dict[str, ManagedProcess], balancer_factory: BalancerFactory
) -> None:
    balancer = balancer_factory([upstreams["n1"], upstreams["n2"]], policy="least-conn")
    with httpx.Client(base_url=balancer.url, timeout=10) as client:
        for _ in range(10):
            client.get("/name").raise_for_status()
        status = client.get("/_cluster/status").json()
    assert status["balancer"] == {
        "url": balancer.url, "policy": "least-conn", "pid": balancer.pid, "kind": "builtin",
    }  # fmt: skip
    assert status["stores"] == []
    nodes = {n["name"]: n for n in status["nodes"]}
    assert set(nodes) == {"n1", "n2"}
    for name, node in nodes.items():
        assert {"name", "route", "url", "pid", "healthy", "requests", "sessions"} <= set(node)
        assert node["route"] == name
        assert node["url"] == upstreams[name].url
        assert node["healthy"] is True
        assert node["latency"]["p99_ms"] > 0
    assert sum(n["requests"] for n in nodes.values()) == 10
    # Ten requests on one client connection reuse pooled node connections.
    assert sum(n["pool"]["opened"] for n in nodes.values()) <= 4


@builtin_only
def test_active_check_takes_a_failing_node_out_and_brings_it_back(
    upstreams: dict[str, ManagedProcess], balancer_factory: BalancerFactory
) -> None:
    sick = upstreams["n1"]
    balancer = balancer_factory([sick, upstreams["n2"]], "--health-interval", "0.1")

    last: list[Any] = []

    def healthy() -> bool:
        status = httpx.get(f"{balancer.url}/_cluster/status", timeout=5).json()
        last[:] = status["nodes"]
        return bool(status["nodes"][0]["healthy"])

    httpx.get(f"{sick.url}/health?ok=0", timeout=5).raise_for_status()
    try:
        wait_for(lambda: not healthy(), lambda: f"n1 down; nodes: {last}")
        # /name itself still works on n1: only the probe says it is sick.
        served = {httpx.get(f"{balancer.url}/name", timeout=5).text for _ in range(10)}
        assert served == {"n2"}, last
    finally:
        httpx.get(f"{sick.url}/health?ok=1", timeout=5).raise_for_status()
    wait_for(healthy, lambda: f"n1 up again; nodes: {last}")
    served = {httpx.get(f"{balancer.url}/name", timeout=5).text for _ in range(10)}
    assert served == {"n1", "n2"}, last


def test_status_hook_and_dashboard_mount_in_process(
    upstreams: dict[str, ManagedProcess],
) -> None:
    """The cluster supervisor's hooks: complete the status, serve the page at /_cluster/."""
    node = upstreams["n1"]
    config = BalancerConfig(
        nodes=(NodeSpec(name="n1", host=node.host, port=node.port),),
        port=0,
        health=HealthConfig(interval=0),
    )

    async def hook(status: dict[str, Any]) -> dict[str, Any]:
        status["nodes"][0]["pid"] = node.pid
        status["nodes"][0]["sessions"] = 7
        status["stores"] = [{"id": "m1", "kind": "memory", "address": None, "pid": None,
                             "healthy": True}]  # fmt: skip
        return status

    async def dashboard(request: LocalRequest) -> LocalResponse:
        return LocalResponse(200, f"<h1>{request.path}</h1>".encode(), "text/html")

    async def scenario() -> tuple[dict[str, Any], str, str, str]:
        balancer = Balancer(config, status_hook=hook)
        balancer.mount("/_cluster/", dashboard)
        await balancer.start()
        try:
            async with httpx.AsyncClient(base_url=balancer.url, timeout=5) as client:
                status = (await client.get("/_cluster/status")).json()
                page = (await client.get("/_cluster/")).text
                proxied = (await client.get("/name")).text
            return status, page, proxied, repr(balancer)
        finally:
            await balancer.stop()

    status, page, proxied, text = asyncio.run(scenario())
    assert status["balancer"]["pid"] == os.getpid()
    assert (status["nodes"][0]["pid"], status["nodes"][0]["sessions"]) == (node.pid, 7)
    assert status["stores"][0]["kind"] == "memory"
    assert page == "<h1>/_cluster/</h1>"
    assert proxied == "n1"
    assert text.startswith("<Balancer serving http://127.0.0.1:")
    assert "policy=round-robin nodes=1/1 up requests=3" in text


@builtin_only
def test_a_client_leaving_mid_download_frees_the_node_connection(
    upstreams: dict[str, ManagedProcess], balancer_factory: BalancerFactory
) -> None:
    balancer = balancer_factory([upstreams["n1"]])
    with httpx.Client(base_url=balancer.url, timeout=10) as client:
        with client.stream("GET", f"/bytes?n={200 * 1024 * 1024}") as response:
            next(response.iter_raw(1024 * 1024))
        # The client closed its connection mid-body: the node's connection must not
        # stay busy or go back to the pool half-read.

        def idle() -> bool:
            node = client.get("/_cluster/status").json()["nodes"][0]
            return bool(node["in_flight"] == 0)

        wait_for(idle, lambda: "n1 still has a request in flight")
        assert client.get("/name").text == "n1"
