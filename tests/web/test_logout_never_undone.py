"""A logout is never undone by a request that was already running (SPEC §8), on every store.

Request A loads the session and changes it; meanwhile request B (another node, another
tab) logs the user out; then A saves. A's write must not bring the session back: the
store's conditional write sees that the version A read is gone, and the protocol drops
A's change (Django's rule; Starlette users hit the opposite in starsessions issue 58).

``locking = none`` is what lets the two requests overlap here; with locking they are
serialized and the race cannot happen (tests/integrations/test_examples_cluster.py runs
the same race through real servers with the default locking). Every store runs the same
test through the same ``SyncDriver`` that the WSGI middleware, Flask and Django use.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sessionshare.config import SessionConfig
from sessionshare.core.manager import RequestInfo
from sessionshare.stores.base import Store
from sessionshare.stores.factory import create_store
from sessionshare.web.drivers import SyncDriver
from tests.conftest import MemcachedFactory
from tests.servers import free_port

STORES = ["memory", "memcached", "replicated", "backup"]


@pytest.fixture(params=STORES)
def driver(
    request: pytest.FixtureRequest, memcached_factory: MemcachedFactory
) -> Iterator[SyncDriver]:
    kind = request.param
    options: dict[str, object] = {"store": kind, "locking": "none"}
    if kind == "memcached":
        servers = memcached_factory(2)
        options["nodes"] = " ".join(f"n{i + 1}:{s.address}" for i, s in enumerate(servers))
    elif kind in ("replicated", "backup"):
        options |= {"members": f"node1=127.0.0.1:{free_port()}", "member_name": "node1",
                    "route": "node1", "secret": "test-secret"}  # fmt: skip
    config = SessionConfig.load(environ={}, **options)
    store: Store = create_store(config)
    driver = SyncDriver(config, store)
    ready = getattr(store, "ready", None)
    if ready is not None:
        assert ready(), "a one-member cluster is ready at once"
    yield driver
    driver.close()


def _request(driver: SyncDriver, cookie: str | None, method: str = "POST") -> RequestInfo:
    name = driver.config.cookie_name
    return RequestInfo(method, "/cart", "http", f"{name}={cookie}" if cookie else None)


def test_a_save_after_a_concurrent_logout_does_not_bring_the_session_back(
    driver: SyncDriver,
) -> None:
    first = driver.open(_request(driver, None))
    first.session["user"] = "alice"
    first.session["cart"] = ["pear"]
    driver.save(first)
    driver.finish(first)
    cookie = first.session.id

    slow = driver.open(_request(driver, cookie))  # A: loaded, still in its view
    logout = driver.open(_request(driver, cookie))  # B: another node, another tab
    assert slow.session["user"] == logout.session["user"] == "alice"
    logout.session.invalidate()
    expired = driver.save(logout)
    driver.finish(logout)
    assert any("Max-Age=0" in c for c in expired), "the logout expires the cookie"

    slow.session["cart"].append("nails")  # A saves after the logout
    driver.save(slow)
    driver.finish(slow)

    after = driver.open(_request(driver, cookie, "GET"))
    try:
        assert after.session.is_new, f"the logout was undone: {dict(after.session)}"
        assert "user" not in after.session
    finally:
        driver.finish(after)
    assert driver.manager.stats.conflicts >= 1, "A's write met the logout, not an empty store"
