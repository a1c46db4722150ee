"""Each framework's example app as two real server processes sharing sessions.

The apps in examples/ (Flask + Flask-Login, Django + contrib.auth, FastAPI) all speak the
same small JSON contract (docs/integrations.md): ``/login``, ``/cart``, ``/me``,
``/logout``. Each runs here as 2 nodes through ``sessionshare node --app`` (gunicorn for
the WSGI apps, uvicorn for the ASGI one: the command picks the server from the app), on
a real memcached pair and on the ``replicated`` peer store, and a user moves between the
nodes as a round-robin balancer would move them:

- log in on node 1, the cart survives on node 2;
- login rotates the session id (fixation defence) and keeps the cart filled before it;
- logout on node 2 logs out node 1, and the old id opens nothing anywhere;
- a logout that races a slow cart update stays a logout.

The client is plain ``http.client`` with one cookie that it keeps itself: every transport
error or 5xx fails the test (no retry hides one).
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import MemcachedFactory
from tests.servers import ManagedProcess, free_port

APPS = {
    "flask": ("examples.flask_app:app", "session"),
    "django": ("examples.django_app.wsgi:application", "sessionid"),
    "fastapi": ("examples.fastapi_app:app", "session"),
}
STORES = ["memcached", "replicated"]


@dataclass
class User:
    """One browser: a cookie it keeps itself, sent to whichever node it calls."""

    cookie_name: str
    cookie: str | None = None
    seen: list[str] = field(default_factory=list)

    def call(
        self, node: ManagedProcess, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if self.cookie:
            headers["Cookie"] = f"{self.cookie_name}={self.cookie}"
        conn = http.client.HTTPConnection(node.host, node.port, timeout=15)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            for header in response.headers.get_all("Set-Cookie") or ():
                self._take(header)
        finally:
            conn.close()
        assert response.status < 500, f"{method} {path} on {node.name}: {response.status} {raw!r}"
        return response.status, json.loads(raw)

    def _take(self, header: str) -> None:
        match = re.match(rf"\s*{re.escape(self.cookie_name)}=([^;]*)", header)
        if match is None:
            return
        expired = re.search(r"max-age=0\b|expires=thu, 01 jan 1970", header, re.IGNORECASE)
        self.cookie = None if expired or not match[1].strip('"') else match[1].strip('"')
        if self.cookie:
            self.seen.append(self.cookie)


def _token(session_id: str) -> str:
    """The part of an id that never changes on failover (the route suffix may)."""
    return re.split(r"[-.]", session_id, maxsplit=1)[0]


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest,
    process_factory: Callable[..., ManagedProcess],
    memcached_factory: MemcachedFactory,
) -> Iterator[tuple[list[ManagedProcess], str]]:
    framework, store = request.param
    spec, cookie_name = APPS[framework]
    options: list[str] = ["--store", store]
    if store == "memcached":
        servers = memcached_factory(2)
        options += ["--nodes", " ".join(f"n{i + 1}:{s.address}" for i, s in enumerate(servers))]
    else:
        members = " ".join(f"node{i}=127.0.0.1:{free_port()}" for i in (1, 2))
        options += ["--members", members, "--secret", "integration-test-secret"]
    command = [sys.executable, "-m", "sessionshare", "node", "--app", spec, *options]
    nodes = [
        process_factory(
            [*command, "--name", name, "--port", "{port}"],
            name=name,
            ready_path="/healthz",
            timeout=60,
        )
        for name in ("node1", "node2")
    ]
    yield nodes, cookie_name


CASES = [pytest.param((f, s), id=f"{f}-{s}") for f in APPS for s in STORES]


@pytest.mark.parametrize("cluster", CASES, indirect=True)
def test_login_cart_and_logout_follow_the_user_across_nodes(
    cluster: tuple[list[ManagedProcess], str],
) -> None:
    (node1, node2), cookie_name = cluster
    user = User(cookie_name)

    status, body = user.call(node1, "POST", "/cart", {"item": "pear"})
    assert status == 200 and body["cart"] == ["pear"]
    before_login = user.cookie
    assert before_login is not None, "an anonymous cart is a session too"

    status, body = user.call(node1, "POST", "/login", {"username": "alice", "password": "nope"})
    assert status == 401
    alice = {"username": "alice", "password": "wonderland"}
    status, body = user.call(node1, "POST", "/login", alice)
    assert (status, body["user"]) == (200, "alice")
    assert user.cookie is not None and _token(user.cookie) != _token(before_login), (
        "login must rotate the session id (session fixation)"
    )

    status, body = user.call(node2, "GET", "/me")
    assert (body["user"], body["cart"], body["node"]) == ("alice", ["pear"], "node2")
    status, body = user.call(node2, "POST", "/cart", {"item": "apple"})
    assert body["cart"] == ["pear", "apple"]
    status, body = user.call(node1, "GET", "/me")
    assert (body["user"], body["cart"], body["node"]) == ("alice", ["pear", "apple"], "node1")

    attacker = User(cookie_name, cookie=before_login)  # the id from before login is dead
    for node in (node1, node2):
        status, body = attacker.call(node, "GET", "/me")
        assert (body["user"], body["cart"]) == (None, [])

    logged_in = user.cookie
    status, body = user.call(node2, "POST", "/logout")
    assert (status, body["user"]) == (200, None)
    replay = User(cookie_name, cookie=logged_in)  # a tab that still holds the old cookie
    for node in (node1, node2):
        status, body = replay.call(node, "GET", "/me")
        assert (body["user"], body["cart"]) == (None, []), f"logout on node2 undone on {node.name}"


@pytest.mark.parametrize("cluster", CASES, indirect=True)
def test_a_logout_racing_a_cart_update_stays_logged_out(
    cluster: tuple[list[ManagedProcess], str],
) -> None:
    (node1, node2), cookie_name = cluster
    user = User(cookie_name)
    user.call(node1, "POST", "/login", {"username": "bob", "password": "builder"})
    user.call(node1, "POST", "/cart", {"item": "hammer"})
    logged_in = user.cookie
    assert logged_in is not None

    slow = User(cookie_name, cookie=logged_in)  # the same browser, a second tab
    outcome: list[Any] = []

    def cart_update() -> None:
        try:
            outcome.append(slow.call(node1, "POST", "/cart", {"item": "nails", "delay": 1.0}))
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            outcome.append(exc)

    thread = threading.Thread(target=cart_update)
    thread.start()
    time.sleep(0.3)  # the update has loaded the session and is inside its view
    status, body = user.call(node2, "POST", "/logout")
    assert (status, body["user"]) == (200, None)
    thread.join(20)
    assert not thread.is_alive(), "the cart update never finished"
    assert len(outcome) == 1 and not isinstance(outcome[0], BaseException), outcome
    # Either the update finished first (locked) or it was refused/dropped: both are fine,
    # as long as nothing brings the session back.
    time.sleep(0.2)
    for node in (node1, node2):
        for cookie in {logged_in, *slow.seen}:
            status, body = User(cookie_name, cookie=cookie).call(node, "GET", "/me")
            assert body["user"] is None, f"the logout was undone on {node.name} ({cookie})"
            assert "nails" not in body["cart"] and "hammer" not in body["cart"]
