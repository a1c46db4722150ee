"""The ``/_cluster/`` dashboard in a real headless Chromium (Debian's ``chromium``).

The browser is driven over the DevTools protocol (a WebSocket, with the ``websockets``
library uvicorn already depends on): load the page, see both nodes healthy, ``kill -9`` one
node, and see the page itself report it down within 5 s. A screenshot of that moment is
saved under ``test-artifacts/`` (``docs/dashboard.png`` is one of them).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from base64 import b64decode
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.cluster.conftest import StartCluster
from tests.replication.helpers import run_clients
from tests.servers import ManagedProcess, ProcessPool, free_port, require_binary

ARTIFACTS = Path(
    os.environ.get("SESSIONSHARE_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)


class DevTools:
    """Just enough of the Chrome DevTools protocol: call a method, evaluate JavaScript."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ident:  # other messages are events: not needed here
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result
        raise TimeoutError(f"DevTools did not answer {method}")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str) -> float:
        """Seconds until ``expression`` is truthy in the page; fails after ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.evaluate(expression):
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"the dashboard did not show {what} within {timeout}s")


def start_chromium(pool: ProcessPool, profile: Path) -> ManagedProcess:
    binary = require_binary("chromium")
    port = free_port()
    browser = ManagedProcess(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
         "--remote-allow-origins=*", "--remote-debugging-address=127.0.0.1",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
         "--window-size=1280,900", "about:blank"],
        port, name="chromium", log_dir=pool.log_dir, ready_path="/json/version",
        ready_timeout=30,
    )  # fmt: skip
    return pool.add(browser).start().wait_ready()


def node_row(name: str, attribute: str) -> str:
    return f"document.querySelector('#nodes tr[data-node=\"{name}\"]')?.dataset.{attribute}"


@pytest.mark.servers
def test_dashboard_shows_both_nodes_and_reports_a_killed_one_down_within_5s(
    start_cluster: StartCluster, server_pool: ProcessPool, tmp_path: Path
) -> None:
    cluster = start_cluster(store="memcached")
    cluster.wait_all_healthy()
    browser = start_chromium(server_pool, tmp_path / "chromium-profile")
    targets = httpx.get(f"{browser.url}/json/list", timeout=10).json()
    page = next(t for t in targets if t["type"] == "page")
    # Some traffic, so the requests/s charts have something to draw (bounded: 8 x 150).
    load = threading.Thread(
        target=run_clients,
        args=(8, 150, lambda c, i, b: (b.get(cluster.process), time.sleep(0.02))[0]),
        kwargs={"seconds": 60},
        daemon=True,
    )
    with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
        tools = DevTools(ws)
        tools.call("Page.navigate", url=f"{cluster.url}/_cluster/")
        tools.wait_for(
            "document.querySelectorAll('#nodes tr[data-healthy=\"true\"]').length === 2",
            10,
            "both nodes healthy",
        )
        assert tools.evaluate("document.querySelectorAll('#stores tbody tr').length") == 2
        load.start()
        time.sleep(4)  # a few chart points
        pid = cluster.node("node2")["pid"]
        assert str(pid) in tools.evaluate("document.querySelector('#nodes').innerText")
        os.kill(pid, signal.SIGKILL)
        took = tools.wait_for(f"{node_row('node2', 'healthy')} === 'false'", 5, "node2 down")
        assert tools.evaluate(f"{node_row('node1', 'healthy')}") == "true"
        stores = tools.evaluate("document.querySelector('#stores').innerText")
        assert "%" in stores, f"memcached hit ratio missing after traffic: {stores}"
        events = tools.evaluate("document.querySelector('#events').innerText")
        assert "node2 is down" in events, events
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        (ARTIFACTS / "dashboard.png").write_bytes(b64decode(shot["data"]))
        # Works offline: every resource the page loaded came from the balancer itself.
        resources = tools.evaluate(
            "performance.getEntriesByType('resource').map(e => e.name).concat([location.href])"
        )
        assert resources and all(url.startswith(cluster.url) for url in resources), resources
        tools.wait_for(f"{node_row('node2', 'healthy')} === 'true'", 30, "node2 back")
        assert tools.evaluate("document.querySelector('#connection').textContent") == "live"
    load.join(60)
    assert took < 5
