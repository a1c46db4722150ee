"""The session protocol, driven by hand against the in-process memory store.

No server here: these tests pin down the protocol's decisions (what is written,
when a cookie is sent, locks, merges). The same behaviours are checked through
real uvicorn and gunicorn servers in tests/web/.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest

from sessionshare.config import SessionConfig
from sessionshare.core.envelope import decode_envelope
from sessionshare.core.manager import RequestInfo, RequestSession, SessionManager
from sessionshare.core.operations import Record, Stored
from sessionshare.errors import LockTimeout, SessionTooLarge
from sessionshare.runners import run_sync
from sessionshare.stores.memory import MemoryStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStore(MemoryStore):
    """The real memory store, counting the protocol's top-level calls (= round trips)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[str] = []
        self._in_batch = False

    def _count(self, name: str) -> None:
        if not self._in_batch:
            self.calls.append(name)

    def get(
        self, key: str, *, node: str | None = None, touch: float | None = None
    ) -> Record | None:
        self._count("get")
        return super().get(key, node=node, touch=touch)

    def write(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float,
        version: Hashable | None,
        node: str | None = None,
    ) -> Stored | None:
        self._count("write")
        return super().write(key, value, ttl=ttl, version=version, node=node)

    def batch(self, ops: Any) -> list[Any]:
        self._count("batch")
        self._in_batch = True
        try:
            return super().batch(ops)
        finally:
            self._in_batch = False


class Harness:
    """One app's manager + store, and a browser-like cookie jar."""

    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.store = CountingStore(clock=self.clock)
        # Only the store's TTLs run on the fake clock; lock deadlines use real time.
        self.manager = SessionManager(SessionConfig.load(environ={}, **options))
        self.cookie: str | None = None

    def open(
        self, path: str = "/", method: str = "GET", cookie: str | None = None
    ) -> RequestSession:
        header = (
            cookie if cookie is not None else (f"SESSIONID={self.cookie}" if self.cookie else None)
        )
        return run_sync(self.manager.open(RequestInfo(method, path, "http", header)), self.store)

    def save(self, state: RequestSession) -> list[str]:
        try:
            cookies: list[str] = run_sync(self.manager.save(state), self.store)
        finally:
            run_sync(self.manager.release(state), self.store)
        for cookie in cookies:
            value = cookie.split(";", 1)[0].split("=", 1)[1]
            self.cookie = value or None
        return cookies

    def request(self, path: str = "/", **changes: Any) -> tuple[RequestSession, list[str]]:
        state = self.open(path)
        state.session.update(changes)
        return state, self.save(state)


def test_new_session_is_stored_only_when_it_has_data() -> None:
    h = Harness()
    state = h.open()
    assert state.session.is_new
    assert h.save(state) == []  # empty new session: no write, no cookie
    assert h.store.calls == []
    _, cookies = h.request(count=1)
    assert len(cookies) == 1 and cookies[0].startswith("SESSIONID=")
    assert h.store.calls == ["write"]


def test_existing_session_is_loaded_and_keeps_its_id() -> None:
    h = Harness()
    first, _ = h.request(count=1)
    state = h.open()
    assert not state.session.is_new
    assert state.session.id == first.session.id and state.session["count"] == 1


def test_unmodified_session_is_not_rewritten_and_costs_one_round_trip() -> None:
    h = Harness(locking="none")
    h.request(count=1, cart=[1, 2])
    h.store.calls.clear()
    state = h.open()
    _ = state.session["cart"]  # read only
    assert h.save(state) == []
    assert h.store.calls == ["get"]


def test_nested_mutation_is_detected_and_saved() -> None:
    h = Harness(locking="none")
    h.request(cart=[1])
    state = h.open()
    state.session["cart"].append(2)  # no __setitem__ on the session
    h.save(state)
    assert h.open().session["cart"] == [1, 2]


def test_locked_modifying_request_costs_two_round_trips() -> None:
    h = Harness(locking="all")
    h.request(count=1)
    h.store.calls.clear()
    h.request(count=2)
    assert h.store.calls == ["batch", "batch"]  # lock+read, write+unlock


def test_lock_timeout_raises_503_and_nothing_is_written() -> None:
    h = Harness(locking="all", lock_timeout="50ms")
    h.request(count=1)
    holder = h.open()  # holds the lock
    assert holder.lock_key is not None
    with pytest.raises(LockTimeout) as caught:
        h.open()
    assert caught.value.status_hint == 503
    assert h.manager.stats.lock_timeouts == 1
    h.save(holder)
    assert h.open().session["count"] == 1


def test_lock_is_released_after_save_and_after_errors() -> None:
    h = Harness(locking="all")
    h.request(count=1)
    state = h.open()
    run_sync(h.manager.release(state), h.store)  # the app failed: driver releases
    assert h.store.get(h.manager.lock_key(state.session.sid.token)) is None


def test_disjoint_concurrent_changes_both_survive_without_locks() -> None:
    h = Harness(locking="none")
    h.request(a=0, b=0)
    first, second = h.open(), h.open()
    first.session["a"] = 1
    second.session["b"] = 2
    h.save(first)
    h.save(second)  # conflicts, merges its change onto the latest version
    assert dict(h.open().session) == {"a": 1, "b": 2}
    assert h.manager.stats.conflicts == 1


def test_deleted_attribute_is_merged_as_a_deletion() -> None:
    h = Harness(locking="none")
    h.request(a=0, b=0, c=0)
    first, second = h.open(), h.open()
    first.session["a"] = 1
    del second.session["c"]
    h.save(first)
    h.save(second)
    assert dict(h.open().session) == {"a": 1, "b": 0}


def test_learned_read_only_requests_skip_the_lock() -> None:
    h = Harness(locking="auto")
    h.request("/write", count=1)
    for _ in range(3):
        state = h.open("/read")
        h.save(state)
    h.store.calls.clear()
    state = h.open("/read")
    assert state.lock_key is None
    assert h.store.calls == ["get"]
    assert h.open("/write").lock_key is not None  # modifying pattern stays locked


def test_uri_locking_mode() -> None:
    h = Harness(locking="uri:^/cart")
    h.request(count=1)
    assert h.open("/cart/add").lock_key is not None
    assert h.open("/other").lock_key is None


def test_oversized_session_is_refused_and_old_version_kept() -> None:
    h = Harness(max_session_bytes="200")
    h.request(note="small")
    state = h.open()
    state.session["note"] = "x" * 500
    with pytest.raises(SessionTooLarge, match="max_session_bytes=200"):
        h.save(state)
    assert h.open().session["note"] == "small"


def test_regenerate_keeps_data_new_token_old_key_deleted() -> None:
    h = Harness()
    first, _ = h.request(user="ann")
    old_token = first.session.sid.token
    state = h.open()
    state.session.regenerate()
    cookies = h.save(state)
    assert len(cookies) == 1
    new = h.open()
    assert new.session.sid.token != old_token and new.session["user"] == "ann"
    assert h.store.get(h.manager.session_key(old_token)) is None


def test_invalidate_deletes_and_expires_the_cookie() -> None:
    h = Harness()
    first, _ = h.request(user="ann")
    state = h.open()
    state.session.invalidate()
    cookies = h.save(state)
    assert cookies and "Max-Age=0" in cookies[0]
    assert h.store.get(h.manager.session_key(first.session.sid.token)) is None


def test_expired_session_is_never_served() -> None:
    h = Harness(max_inactive="10s")
    first, _ = h.request(count=1)
    h.clock.now += 9
    assert h.open().session.id == first.session.id  # read refreshes the TTL
    h.clock.now += 9
    assert h.open().session.id == first.session.id
    h.clock.now += 11
    fresh = h.open()
    assert fresh.session.is_new and fresh.session.sid.token != first.session.sid.token


def test_unknown_token_is_not_adopted() -> None:
    h = Harness()
    forged = "0123456789abcdef0123456789abcdef"
    state = h.open(cookie=f"SESSIONID={forged}")
    assert state.session.is_new and state.session.sid.token != forged


@pytest.mark.parametrize(
    ("cookie", "counted"),
    [
        ("SESSIONID=../../etc", 1),
        ("SESSIONID=" + "a" * 500, 1),
        ("SESSIONID=0123456789abcdef0123456789abcdef-n9", 1),  # a store node we do not have
        ('SESSIONID=""', 1),
        ("SESSIONID", 0),  # no value at all: no session cookie was sent
        ("=;;=", 0),
    ],
)
def test_malformed_cookies_start_fresh_and_are_counted(cookie: str, counted: int) -> None:
    h = Harness()
    state = h.open(cookie=cookie)
    assert state.session.is_new
    assert h.manager.stats.invalid_ids == counted


def test_route_is_rewritten_to_the_serving_node() -> None:
    node1, node2 = Harness(route="node1"), Harness(route="node2")
    node2.store = node1.store  # one shared store, two app nodes
    first, _ = node1.request(count=1)
    assert first.session.id.endswith(".node1")
    node2.cookie = node1.cookie
    state = node2.open()
    assert state.session.id == first.session.sid.token + ".node2"
    assert node2.save(state) != []  # the cookie is re-sent with the new route


def test_corrupt_store_data_is_a_miss_and_kept_aside() -> None:
    h = Harness()
    first, _ = h.request(count=1)
    token = first.session.sid.token
    h.store.write(
        h.manager.session_key(token),
        b"\x00garbage",
        ttl=60,
        version=h.store.get(h.manager.session_key(token)).version,
    )  # type: ignore[union-attr]
    state = h.open()
    assert state.session.is_new
    assert h.manager.stats.corrupt == 1
    kept = h.store.get(h.manager.quarantine_key(token))
    assert kept is not None and kept.value == b"\x00garbage"


def test_attribute_filter_keeps_unshared_attributes_out_of_the_store() -> None:
    h = Harness(attribute_filter="^shared_")
    first, _ = h.request(shared_cart=[1], local_cache="big")
    record = h.store.get(h.manager.session_key(first.session.sid.token))
    assert record is not None
    assert b"shared_cart" in decode_envelope(record.value).attributes
    assert b"local_cache" not in record.value


def test_ignored_paths_never_touch_the_store() -> None:
    h = Harness()
    h.request(count=1)
    h.store.calls.clear()
    state = h.open("/static/app.css")
    state.session["x"] = 1
    assert h.save(state) == [] and h.store.calls == []


def test_memory_store_evicts_lru_and_counts() -> None:
    store = MemoryStore(max_entries=2)
    for key in ("a", "b", "c"):
        store.add(key, b"1", ttl=60)
    assert store.get("a") is None and store.get("c") is not None
    assert store.evictions == 1 and store.stats()["evictions"] == 1


def test_lock_of_a_dead_holder_expires_within_lock_ttl() -> None:
    h = Harness(locking="all")
    h.request(count=1)
    h.open()  # a request that took the lock and died (never released)
    h.clock.now += h.manager.lock_ttl + 0.01
    assert h.open().lock_key is not None  # the lease ran out: the next request gets it


def test_renewed_lock_is_kept_past_its_ttl() -> None:
    h = Harness(locking="all", lock_timeout="100ms")
    h.request(count=1)
    holder = h.open()
    for _ in range(5):  # the holder's driver renews while the request runs
        h.clock.now += h.manager.lock_renew_interval
        run_sync(h.manager.renew_locks(), h.store)
    assert h.clock.now - 1000.0 > h.manager.lock_ttl
    with pytest.raises(LockTimeout):
        h.open()
    h.save(holder)
    assert not h.manager.holds_locks
