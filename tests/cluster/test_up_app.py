"""``sessionshare up --app``: each framework's example served by a whole cluster.

Through the embedded balancer (round robin), a user logs in, fills a cart and logs out while
their requests alternate between the two nodes; ``/_cluster/status`` shows both nodes
healthy with their session counters, which the node shell reads from the app's own
session driver (the app has no status endpoint of its own).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import StartCluster

REPO = Path(__file__).resolve().parents[2]

EXAMPLES = {
    "flask": "examples.flask_app:app",
    "django": "examples.django_app.wsgi:application",
    "fastapi": "examples.fastapi_app:app",
}


@pytest.mark.parametrize("framework", list(EXAMPLES))
def test_up_serves_each_example_across_the_cluster(
    framework: str, start_cluster: StartCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the examples, as from a checkout
    cluster = start_cluster(args=["--app", EXAMPLES[framework]])
    cluster.wait_all_healthy()
    with httpx.Client(base_url=cluster.url, timeout=15) as user:
        login = user.post("/login", json={"username": "alice", "password": "wonderland"})
        assert login.status_code == 200, login.text
        seen = set()
        for item in ("pear", "apple", "plum", "fig"):
            response = user.post("/cart", json={"item": item})
            assert response.status_code == 200, response.text
            me = user.get("/me").json()
            assert me["user"] == "alice"
            seen.add(me["node"])
        assert me["cart"] == ["pear", "apple", "plum", "fig"]
        assert seen == {"node1", "node2"}, "round robin moves the user between both nodes"
        assert user.post("/logout").json()["user"] is None
        assert user.get("/me").json() == {**user.get("/me").json(), "user": None, "cart": []}

    status = cluster.status()
    nodes = {node["name"]: node for node in status["nodes"]}
    assert all(node["healthy"] for node in nodes.values())
    assert sum(node["requests"] or 0 for node in nodes.values()) >= 10, nodes
