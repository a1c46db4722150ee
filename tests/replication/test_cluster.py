"""SPEC §7 checks 1, 2, 4 and 5 for the peer stores, on real app-node processes.

Each check runs for ``replicated`` and ``backup`` with 2 and with 3 nodes. Traffic goes
through the embedded balancer (round robin), as a user's would; the lock check sends
its clients straight to different nodes so that they really contend across members.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from sessionshare.core.ids import parse_session_id
from sessionshare.replication.placement import rank
from tests.replication.conftest import REPO, ClusterFactory, PeerCluster
from tests.replication.helpers import Browser, Reply, assert_counts_follow, run_clients
from tests.servers import ManagedProcess, ProcessPool

STORES = ["replicated", "backup"]
SIZES = [2, 3]
CLIENTS, REQUESTS = 50, 40


def start_balancer(
    pool: ProcessPool, cluster: PeerCluster, policy: str = "round-robin"
) -> ManagedProcess:
    """The embedded balancer, round robin by default, probing /healthz every 0.5 s."""
    argv = [sys.executable, "-m", "sessionshare.balancer", "--lb", "builtin",
            "--policy", policy, "--port", "{port}", "--health-interval", "0.5"]  # fmt: skip
    for name, node in cluster.nodes.items():
        argv += ["--node", f"{name}={node.url}"]
    process = ManagedProcess(
        argv, name="balancer", log_dir=pool.log_dir, cwd=REPO, ready_path="/_cluster/status"
    )
    pool.add(process)
    return process.start().wait_ready()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("store", STORES)
def test_check1_counts_follow_across_nodes(
    store: str, size: int, peer_cluster: ClusterFactory, server_pool: ProcessPool
) -> None:
    cluster = peer_cluster(store, size)
    balancer = start_balancer(server_pool, cluster)
    results = run_clients(CLIENTS, REQUESTS, lambda c, i, browser: browser.get(balancer))
    assert_counts_follow(results)
    served = {r.body["node"] for replies in results for r in replies if isinstance(r, Reply)}
    assert served == set(cluster.nodes), "round robin must spread sessions over every node"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("store", STORES)
def test_check2_kill9_mid_run_then_check5_restart(
    store: str, size: int, peer_cluster: ClusterFactory, server_pool: ProcessPool
) -> None:
    cluster = peer_cluster(store, size)
    balancer = start_balancer(server_pool, cluster)
    victim = cluster.nodes[f"node{size}"]
    killed = threading.Event()

    def kill_a_third_in(done: int) -> None:
        if done >= CLIENTS * REQUESTS // 3 and not killed.is_set():
            killed.set()
            victim.kill()

    results = run_clients(
        CLIENTS, REQUESTS, lambda c, i, browser: browser.get(balancer), on_progress=kill_a_third_in
    )
    assert killed.is_set()
    # Check 2: no error, no reset; a request the balancer retried may skip one count.
    assert_counts_follow(results, may_skip=1)

    # Check 5: the node comes back on the same ports, re-joins, serves the old sessions.
    victim.restart()
    last = [[r for r in replies if isinstance(r, Reply)][-1] for replies in results]
    for reply in last:
        browser = Browser(cookie=reply.body["session_id"])
        again = browser.get(victim, "/api/session?peek=1")
        assert again.status == 200 and again.token == reply.token, again
        assert again.count == reply.count, f"{again.body} after {reply.body}"
        browser.close()
    status = Browser().get(victim, "/_node/status").body
    assert status["store"]["status"] == "ready"
    assert all(p["status"] == "ready" for p in status["store"]["peers"].values()), status


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("store", STORES)
def test_check4_one_session_locked_across_nodes(
    store: str, size: int, peer_cluster: ClusterFactory
) -> None:
    cluster = peer_cluster(store, size, options=["--locking", "all"])
    nodes = list(cluster.nodes.values())
    first = Browser()
    assert first.get(nodes[0]).count == 1
    cookie = first.cookie

    def increment(client: int) -> list[int]:
        browser = Browser(cookie=cookie)
        statuses = [browser.get(nodes[(client + i) % size]).status for i in range(25)]
        browser.close()
        return statuses

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for batch in pool.map(increment, range(8)) for s in batch]
    assert statuses == [200] * 200
    final = first.get(nodes[-1], "/api/session?peek=1")
    assert final.count == 1 + 200, final.body


@pytest.mark.parametrize("store", STORES)
def test_wsgi_nodes_replicate_from_a_background_loop(
    store: str, peer_cluster: ClusterFactory
) -> None:
    """gunicorn's sync workers: the member runs on its own thread and event loop."""
    cluster = peer_cluster(store, 2, options=["--server", "gunicorn", "--locking", "all"])
    nodes = list(cluster.nodes.values())
    results = run_clients(10, 20, lambda c, i, browser: browser.get(nodes[(c + i) % 2]))
    assert_counts_follow(results)
    status = Browser().get(nodes[1], "/_node/status").body["store"]
    assert status["kind"] == store and status["status"] == "ready"


@pytest.mark.parametrize("store", STORES)
def test_ids_name_the_owner_so_a_sticky_balancer_sends_each_session_to_its_lock(
    store: str, peer_cluster: ClusterFactory, server_pool: ProcessPool
) -> None:
    """With a peer store the route in an id is the node that owns the session (its lock
    and version), not the node that served it: behind a sticky balancer every request
    after the first lands there, and with round robin the id no longer changes."""
    cluster = peer_cluster(store, 3)
    names = list(cluster.nodes)
    balancer = start_balancer(server_pool, cluster, policy="sticky")
    for _ in range(12):
        browser = Browser()
        replies = [browser.get(balancer) for _ in range(4)]
        assert [r.count for r in replies] == [1, 2, 3, 4]
        sid = parse_session_id(browser.cookie or "")
        assert sid is not None
        owner = rank(sid.token, names)[0]
        assert sid.route == owner
        assert [r.body["node"] for r in replies[1:]] == [owner] * 3
        browser.close()
    # Round robin straight to the nodes: one id throughout, whoever serves it.
    browser = Browser()
    browser.get(cluster.nodes[names[0]])
    first_cookie = browser.cookie
    for i in range(6):
        assert browser.get(cluster.nodes[names[i % 3]]).count == i + 2
        assert browser.cookie == first_cookie
