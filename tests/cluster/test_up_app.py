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
            for _ in range(2):  # two reads in a row: one on each node
                me = user.get("/me").json()
                assert me["user"] == "alice"
                seen.add(me["node"])
        assert me["cart"] == ["pear", "apple", "plum", "fig"]
        assert seen == {"node1", "node2"}, "round robin moves the user between both nodes"
        assert user.post("/logout").json()["user"] is None
        for _ in range(2):  # logged out on both nodes
            me = user.get("/me").json()
            assert (me["user"], me["cart"]) == (None, [])

    # The status polls each node's /_node/status (answered by the node shell) every second.
    status = cluster.wait_for(
        lambda d: sum(node["requests"] or 0 for node in d["nodes"]) >= 16,
        "the nodes' request counters to show the 16 requests",
    )
    assert all(node["healthy"] for node in status["nodes"])
    assert all((node["requests"] or 0) >= 8 for node in status["nodes"]), status["nodes"]
