"""SPEC §7 checks 1-5 and 7 through ``sessionshare up``, for each store and balancer.

One cluster per (store, balancer) pair runs the checks in order, healthy ones first, so the
suite pays four cluster start-ups, not twenty-four. Everything goes through HTTP on the
balancer (the demo endpoints, ``/_cluster/status``) and ``kill -9`` of pids the status names,
as an operator would do it. Check 3 (a store node dies) applies to memcached only: the
replicated store has no store server (its members are the nodes, covered by check 2).
"""

from __future__ import annotations

import os
import random
import signal
from typing import Any

import pytest

from sessionshare.core.ids import parse_session_id
from tests.cluster.conftest import RunningCluster, StartCluster
from tests.replication.helpers import Browser, Reply, assert_counts_follow, run_clients

CLIENTS, REQUESTS = 50, 40  # SPEC §7.1: 50 clients x 40 sequential requests
BAD_COOKIES = 10_000  # SPEC §7.7


def check_sequential_counts(cluster: RunningCluster, *, kill: Any = None) -> list[list[Any]]:
    """§7.1 (and §7.2/§7.3 with ``kill``, called once a quarter of the load is done)."""
    fired = [False]

    def progress(done: int) -> None:
        if kill is not None and not fired[0] and done >= CLIENTS * REQUESTS // 4:
            fired[0] = True
            kill()

    results = run_clients(
        CLIENTS,
        REQUESTS,
        lambda client, i, browser: browser.get(cluster.process),
        seconds=120,
        on_progress=progress,
    )
    assert kill is None or fired[0], "the load ended before the kill"
    assert_counts_follow(results, may_skip=0 if kill is None else 1)
    return results


def check_parallel_increments(cluster: RunningCluster) -> None:
    """§7.4: one session, 8 clients x 25 increments in parallel, locking on: count 200."""
    first = Browser()
    created = first.request(cluster.process, "POST", "/api/session", {"owner": "check4"})
    assert created.status == 200, created
    cookie = first.cookie
    first.close()

    def step(client: int, i: int, browser: Browser) -> Reply:
        if browser.cookie is None:
            browser.cookie = cookie
        return browser.get(cluster.process)

    results = run_clients(8, 25, step, seconds=120)
    failures = [r for rs in results for r in rs if not isinstance(r, Reply) or r.status != 200]
    assert not failures, failures[:3]
    final = Browser(cookie=cookie).get(cluster.process, "/api/session?peek=1")
    assert final.count == 200, f"lost updates: final count {final.count}, expected 200"


def bad_cookie(rng: random.Random, i: int) -> str:
    """Malformed, forged, oversized or unknown session cookies (printable latin-1 only)."""
    token = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    alphabet = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ";,") + "éü"
    match i % 6:
        case 0:  # forged: well-formed, but no such session
            return f"{token}-n1.node1"
        case 1:  # unknown store node / route
            return f"{token}-zz{i}.nowhere"
        case 2:  # oversized
            return token * rng.randint(5, 60)
        case 3:  # garbage
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200)))
        case 4:  # broken structure
            return rng.choice([f"{token}..", f"-{token}", f"{token}-", ".", "-", f"{token[:31]}g"])
        case _:  # several cookies, the session one empty or doubled
            return f"{token}; SESSIONID=; SESSIONID={token}.x; other=1"


def check_bad_cookies(cluster: RunningCluster) -> None:
    """§7.7: 10 000 bad cookies: no 5xx, no crash, a fresh session each time."""
    clients = 20
    rng = random.Random(7)
    cookies = [bad_cookie(rng, i) for i in range(BAD_COOKIES)]

    def step(client: int, i: int, browser: Browser) -> Reply:
        sent = cookies[client * (BAD_COOKIES // clients) + i]
        browser.cookie = sent
        reply = browser.get(cluster.process)
        assert reply.status == 200, (sent, reply)
        assert reply.count == 1, f"cookie {sent!r} reached an existing session: {reply}"
        assert reply.token not in sent, f"cookie {sent!r}: its token was adopted"
        return reply

    results = run_clients(clients, BAD_COOKIES // clients, step, seconds=180)
    failures = [r for rs in results for r in rs if not isinstance(r, Reply)]
    assert not failures, failures[:3]
    assert sum(len(rs) for rs in results) == BAD_COOKIES
    assert cluster.status()["balancer"]["pid"], "the balancer must still answer"


def kill_node(cluster: RunningCluster, name: str) -> int:
    pid = int(cluster.node(name)["pid"])
    os.kill(pid, signal.SIGKILL)
    return pid


def check_restarted_node_serves_old_sessions(
    cluster: RunningCluster, name: str, old_pid: int, results: list[list[Any]]
) -> None:
    """§7.5: the killed node is back (new pid, healthy) and serves sessions made before."""
    document = cluster.wait_for(
        lambda d: any(
            n["name"] == name and n["healthy"] and n["pid"] not in (None, old_pid)
            for n in d["nodes"]
        ),
        f"{name} restarted and healthy",
    )
    node = next(n for n in document["nodes"] if n["name"] == name)
    host, port = node["url"].removeprefix("http://").rsplit(":", 1)
    direct = _Target(host, int(port))
    for replies in results[:5]:
        last = replies[-1]
        assert isinstance(last, Reply)
        browser = Browser(cookie=_cookie_of(last))
        reply = browser.get(direct)  # type: ignore[arg-type]
        browser.close()
        assert reply.status == 200, reply
        assert reply.body["node"] == name
        assert reply.token == last.token and reply.count == last.count + 1, (last, reply)


def relocated_from(store_node: str, replies: list[Any]) -> bool:
    """The client's id named ``store_node`` once, and another store node at the end."""
    ids = [parse_session_id(r.body["session_id"]) for r in replies if isinstance(r, Reply)]
    nodes = [sid.node for sid in ids if sid is not None]
    return store_node in nodes and nodes[-1] != store_node


class _Target:
    """Enough of a ManagedProcess for ``Browser``: where to send requests."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.addr = (host, port)


def _cookie_of(reply: Reply) -> str:
    return str(reply.body["session_id"])


@pytest.mark.servers
@pytest.mark.parametrize("lb", ["builtin", "nginx"])
@pytest.mark.parametrize("store", ["replicated", "memcached"])
def test_spec_checks_through_sessionshare_up(
    start_cluster: StartCluster, store: str, lb: str
) -> None:
    cluster = start_cluster(store=store, lb=lb)
    cluster.wait_all_healthy()

    check_sequential_counts(cluster)  # §7.1
    check_parallel_increments(cluster)  # §7.4
    check_bad_cookies(cluster)  # §7.7

    killed: list[int] = []
    results = check_sequential_counts(  # §7.2
        cluster, kill=lambda: killed.append(kill_node(cluster, "node2"))
    )
    check_restarted_node_serves_old_sessions(cluster, "node2", killed[0], results)  # §7.5
    assert cluster.node("node2")["healthy"]

    if store == "memcached":  # §7.3: kill -9 of one memcached node mid-run
        store_pid = int(cluster.store("m1")["pid"])
        results = check_sequential_counts(cluster, kill=lambda: os.kill(store_pid, signal.SIGKILL))
        assert any(relocated_from("m1", replies) for replies in results), (
            "no session relocated away from the killed store node"
        )
        cluster.wait_for(
            lambda d: any(s["id"] == "m1" and s["healthy"] and s["pid"] != store_pid
                          for s in d["stores"]),
            "memcached m1 restarted",
        )  # fmt: skip
