"""The Django engine (``SESSION_ENGINE = "sessionshare.django"``) and its middleware.

Three layers:

- the behaviours Django's own ``SessionTestsMixin`` checks of every engine, sync and async,
  on the memory store (pure engine logic, no server needed);
- what sessionshare adds: a logout is never undone (``UpdateError``), concurrent saves
  merge, two processes on one real memcached share sessions, the session lock, 503 when
  the store is down;
- the example app (examples/django_app) driven through its contract with Django's test
  ``Client``.

Django is configured once for this module with the example's settings module, and the
``DJANGO_SETTINGS_MODULE`` variable is put back afterwards, so no other test file sees it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from sessionshare.config import SessionConfig
from sessionshare.core.envelope import Envelope, decode_envelope, encode_envelope
from sessionshare.core.ids import parse_session_id
from sessionshare.errors import LockTimeout, StoreError
from sessionshare.stores.memory import MemoryStore
from sessionshare.web.drivers import SyncDriver
from tests.conftest import MemcachedFactory

T = TypeVar("T")


@pytest.fixture(scope="module", autouse=True)
def django_configured() -> Iterator[None]:
    """Django set up with the example's settings; the environment left as it was."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("SESSIONSHARE_")}
    previous = os.environ.get("DJANGO_SETTINGS_MODULE")
    os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_app.settings"
    for name in saved:  # the example must run on its defaults (memory store) here
        del os.environ[name]
    try:
        import django

        django.setup()
        yield
    finally:
        from sessionshare.django import reset_engine

        reset_engine()
        if previous is None:
            os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        else:
            os.environ["DJANGO_SETTINGS_MODULE"] = previous
        os.environ.update(saved)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


class Clock:
    """The memory store's clock, moved by hand (TTL checks without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine_on(config: SessionConfig, store: Any = None) -> Any:
    from sessionshare.django import DjangoEngine

    return DjangoEngine(SyncDriver(config, store))


def bind(engine: Any) -> Any:
    """A ``SessionStore`` class bound to ``engine``: one "process" of the app."""
    from sessionshare.django import SessionStore

    return type("BoundSessionStore", (SessionStore,), {"engine_override": engine})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(clock: Clock) -> Any:
    return engine_on(SessionConfig(store="memory"), MemoryStore(clock=clock))


@pytest.fixture
def backend(engine: Any) -> Any:
    return bind(engine)


@pytest.fixture
def session(backend: Any) -> Iterator[Any]:
    session = backend()
    yield session
    session.delete()


def memcached_engine(address: str, **options: Any) -> Any:
    return engine_on(SessionConfig(store="memcached", nodes=f"n1:{address}", **options))


# -- Django's SessionTestsMixin, sync ---------------------------------------------------------


def test_new_session_is_empty_and_untouched(session: Any) -> None:
    assert session.modified is False and session.accessed is False
    assert session.get("cat") is None
    assert session.session_key is None


def test_mapping_methods_and_flags(session: Any) -> None:
    session["cat"] = "dog"
    assert session.modified is True
    assert session.pop("cat") == "dog"
    session["some key"] = "exists"
    session.modified = session.accessed = False
    assert session.pop("some key") == "exists"
    assert session.accessed and session.modified
    assert session.get("some key") is None

    session.modified = session.accessed = False
    assert session.pop("some key", "does not exist") == "does not exist"
    assert session.accessed is True and session.modified is False

    assert session.setdefault("foo", "bar") == "bar"
    assert session.setdefault("foo", "baz") == "bar"
    session.update({"update key": 1})
    assert session.get("update key") == 1

    session.modified = session.accessed = False
    assert "foo" in session and session.accessed and not session.modified
    assert sorted(session.keys()) == ["foo", "update key"]
    assert sorted(session.values(), key=str) == [1, "bar"]
    assert sorted(session.items()) == [("foo", "bar"), ("update key", 1)]
    assert not session.modified

    session.clear()
    assert list(session.items()) == [] and session.accessed and session.modified


def test_save_and_load_round_trip_is_a_sessionshare_record(session: Any, backend: Any) -> None:
    session["a"], session["cart"] = 1, ["pear"]
    session.save()
    assert session["a"] == 1  # save does not clear the data
    sid = parse_session_id(session.session_key)
    assert sid is not None, session.session_key
    assert session.exists(session.session_key)

    other = backend(session.session_key)
    assert other["cart"] == ["pear"] and other["a"] == 1

    engine = backend.engine()
    record = engine.store.get(engine.manager.session_key(sid.token))
    envelope = decode_envelope(record.value)  # the form every other adapter reads
    assert json.loads(envelope.attributes) == {"a": 1, "cart": ["pear"]}
    assert envelope.max_inactive == session.get_expiry_age()


def test_delete(session: Any) -> None:
    session.save()
    key = session.session_key
    session.delete(key)
    assert not session.exists(key)


def test_flush_ends_the_session(session: Any, backend: Any) -> None:
    session["foo"] = "bar"
    session.save()
    previous = session.session_key
    session.flush()
    assert not session.exists(previous)
    assert session.session_key != previous
    assert session.modified and session.accessed
    assert backend(previous).load() == {}
    assert "foo" not in session


def test_cycle_key_keeps_the_data_and_kills_the_old_key(session: Any, backend: Any) -> None:
    session["a"], session["b"] = "c", "d"
    session.save()
    previous = session.session_key
    data = sorted(session.items())
    session.cycle_key()
    assert session.session_key != previous
    assert parse_session_id(session.session_key).token != parse_session_id(previous).token
    assert sorted(session.items()) == data
    assert not session.exists(previous)
    session.save()
    assert sorted(backend(session.session_key).items()) == data
    assert backend(previous).get("a") is None


def test_cycle_key_with_no_session_cache(session: Any, backend: Any) -> None:
    session["a"], session["b"] = "c", "d"
    session.save()
    data = sorted(session.items())
    fresh = backend(session.session_key)
    assert not hasattr(fresh, "_session_cache")
    fresh.cycle_key()
    assert sorted(fresh.items()) == data


@pytest.mark.parametrize(
    "key",
    [
        "1",
        "12345678",  # long enough for Django, not a sessionshare id
        "A" * 32,  # not lowercase hex
        "0" * 32 + "-nosuchnode",  # a store node the store does not have
        "0" * 32 + ".bad-route",
        "0" * 200,
        "../../etc/passwd",
    ],
)
def test_invalid_and_forged_keys_are_no_session(backend: Any, key: str) -> None:
    session = backend(key)
    assert session.session_key is None
    assert session.get("cat") is None
    assert session.exists(key) is False
    session.delete(key)  # no exception either
    session.save()
    assert session.session_key != key
    assert parse_session_id(session.session_key) is not None
    session.delete()


def test_unknown_key_load_does_not_create_a_record(backend: Any) -> None:
    unknown = "0123456789abcdef0123456789abcdef"
    session = backend(unknown)
    assert session.session_key == unknown
    assert session.load() == {}
    assert session.session_key is None
    assert session.exists(unknown) is False


def test_session_key_is_read_only(session: Any) -> None:
    with pytest.raises(AttributeError):
        session.session_key = session._get_new_session_key()


def test_exists_and_create(backend: Any) -> None:
    first, second = backend(), backend()
    first.create()
    second.create()
    assert first.session_key != second.session_key
    assert first.exists(first.session_key) and second.exists(second.session_key)
    assert first.modified is True
    assert backend(first.session_key).load() == {}


def test_must_create_collision_is_a_create_error(session: Any, backend: Any) -> None:
    from django.contrib.sessions.backends.base import CreateError

    session["x"] = 1
    session.save()
    twin = backend(session.session_key)
    twin["x"] = 2
    with pytest.raises(CreateError):
        twin.save(must_create=True)
    assert backend(session.session_key)["x"] == 1


def test_default_expiry_is_session_cookie_age(session: Any) -> None:
    from django.conf import settings

    assert session.get_expiry_age() == settings.SESSION_COOKIE_AGE
    session.set_expiry(0)  # browser-close sessions still have an age in the store
    assert session.get_expiry_age() == settings.SESSION_COOKIE_AGE


def test_custom_expiry_seconds_timedelta_datetime(
    session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.utils import timezone

    modification = timezone.now()
    session.set_expiry(10)
    assert session.get_expiry_date(modification=modification) == modification + timedelta(
        seconds=10
    )
    assert session.get_expiry_age(modification=modification) == 10

    monkeypatch.setattr(timezone, "now", lambda: modification)
    session.set_expiry(timedelta(seconds=10))
    monkeypatch.undo()
    assert session.get_expiry_date(modification=modification) == modification + timedelta(
        seconds=10
    )
    assert session.get_expiry_age(modification=modification) == 10

    session.set_expiry(modification + timedelta(seconds=10))
    assert session.get_expiry_date(modification=modification) == modification + timedelta(
        seconds=10
    )
    assert session.get_expiry_age(modification=modification) == 10


def test_custom_expiry_reset(session: Any) -> None:
    from django.conf import settings

    session.set_expiry(None)
    session.set_expiry(10)
    session.set_expiry(None)
    assert session.get_expiry_age() == settings.SESSION_COOKIE_AGE


@pytest.mark.parametrize("at_close", [False, True])
def test_get_expire_at_browser_close(session: Any, at_close: bool) -> None:
    from django.test import override_settings

    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=at_close):
        session.set_expiry(10)
        assert session.get_expire_at_browser_close() is False
        session.set_expiry(0)
        assert session.get_expire_at_browser_close() is True
        session.set_expiry(None)
        assert session.get_expire_at_browser_close() is at_close


def test_the_store_ttl_is_the_expiry_age(session: Any, backend: Any, clock: Clock) -> None:
    session["foo"] = "bar"
    session.set_expiry(10)
    session.save()
    key = session.session_key
    clock.now += 9
    assert backend(key)["foo"] == "bar"
    clock.now += 2  # the store forgot it after the 10 s Django asked for
    assert "foo" not in backend(key)


def test_actual_expiry_in_the_past(session: Any, backend: Any) -> None:
    session["foo"] = "bar"
    session.set_expiry(-timedelta(seconds=10))
    session.save()
    assert "foo" not in backend(session.session_key)


def test_a_record_older_than_its_age_is_never_served(session: Any, backend: Any) -> None:
    """Even when the store keeps it longer (its clock, a touch by another adapter)."""
    session["foo"] = "bar"
    session.save()
    engine = backend.engine()
    key = engine.manager.session_key(parse_session_id(session.session_key).token)
    old = decode_envelope(engine.store.get(key).value)
    stale = Envelope(old.created_at, 60.0, time.time() - 61, old.attributes)
    engine.store.write(key, encode_envelope(stale), ttl=3600, version=engine.store.get(key).version)
    assert "foo" not in backend(session.session_key)


def test_corrupt_data_is_a_logged_miss_kept_aside(
    session: Any, backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    session["foo"] = "bar"
    session.save()
    engine = backend.engine()
    token = parse_session_id(session.session_key).token
    key = engine.manager.session_key(token)
    engine.store.write(key, b"garbage", ttl=60, version=engine.store.get(key).version)
    with caplog.at_level(logging.WARNING, logger="sessionshare.django"):
        fresh = backend(session.session_key)
        assert fresh.get("foo") is None
    assert fresh.session_key is None
    assert "unreadable" in caplog.text
    assert engine.store.get(engine.manager.quarantine_key(token)).value == b"garbage"


def test_clear_expired_and_clearsessions_are_no_ops(backend: Any) -> None:
    from django.core.management import call_command

    backend.clear_expired()
    run(backend.aclear_expired())
    call_command("clearsessions")  # SESSION_ENGINE = "sessionshare.django": must not crash


# -- the same, async ---------------------------------------------------------------------------


def test_async_mapping_methods(session: Any) -> None:
    async def scenario() -> None:
        await session.aset("cat", "dog")
        assert session.modified
        assert await session.aget("cat") == "dog"
        assert await session.apop("cat") == "dog"
        assert await session.apop("cat", "gone") == "gone"
        assert await session.asetdefault("foo", "bar") == "bar"
        assert await session.asetdefault("foo", "baz") == "bar"
        await session.aupdate({"n": 1})
        assert await session.ahas_key("n")
        assert sorted(await session.akeys()) == ["foo", "n"]
        assert sorted(await session.avalues(), key=str) == [1, "bar"]
        assert sorted(await session.aitems()) == [("foo", "bar"), ("n", 1)]

    run(scenario())


def test_async_save_load_delete_flush_cycle(backend: Any) -> None:
    async def scenario() -> None:
        session = backend()
        await session.aset("a", "b")
        await session.asave()
        key = session.session_key
        assert await session.aexists(key)
        loaded = backend(key)
        assert await loaded.aget("a") == "b"
        assert await loaded.aload() == {"a": "b"}

        await loaded.acycle_key()
        assert loaded.session_key != key and await loaded.aget("a") == "b"
        assert not await loaded.aexists(key)
        await loaded.asave()
        assert await backend(loaded.session_key).aget("a") == "b"

        cycled = loaded.session_key
        await loaded.aflush()
        assert loaded.session_key is None and not await loaded.aexists(cycled)

        other = backend()
        await other.acreate()
        assert await other.aexists(other.session_key)
        await other.adelete()
        assert not await other.aexists(other.session_key)

        assert await backend("0123456789abcdef0123456789abcdef").aload() == {}

    run(scenario())


def test_async_expiry(session: Any) -> None:
    from django.conf import settings
    from django.utils import timezone

    async def scenario() -> None:
        modification = timezone.now()
        assert await session.aget_expiry_age() == settings.SESSION_COOKIE_AGE
        await session.aset_expiry(10)
        assert await session.aget_expiry_age(modification=modification) == 10
        assert await session.aget_expiry_date(modification=modification) == (
            modification + timedelta(seconds=10)
        )
        await session.aset_expiry(modification + timedelta(seconds=20))
        assert await session.aget_expiry_age(modification=modification) == 20
        await session.aset_expiry(0)
        assert await session.aget_expire_at_browser_close() is True
        await session.aset_expiry(None)
        assert await session.aget_expiry_age() == settings.SESSION_COOKIE_AGE

    run(scenario())


def test_async_must_create_collision_and_no_resurrection(backend: Any) -> None:
    from django.contrib.sessions.backends.base import CreateError, UpdateError

    async def scenario() -> None:
        first = backend()
        await first.aset("data", "v1")
        await first.asave(must_create=True)
        twin = backend(first.session_key)
        with pytest.raises(CreateError):
            await twin.asave(must_create=True)
        await backend(first.session_key).adelete()  # a logout elsewhere
        await first.aset("data", "v2")
        with pytest.raises(UpdateError):
            await first.asave()
        assert await first.aload() == {}

    run(scenario())


# -- a logout is never undone; concurrent saves merge -----------------------------------------


def test_save_does_not_resurrect_a_session_deleted_elsewhere(backend: Any) -> None:
    from django.contrib.sessions.backends.base import UpdateError

    first = backend()
    first["test_data"] = "value1"
    first.save(must_create=True)
    backend(first.session_key).delete()  # logout in another request
    first["test_data"] = "value2"
    with pytest.raises(UpdateError):
        first.save()
    assert first.load() == {}


def test_a_loaded_session_flushed_elsewhere_stays_gone(backend: Any) -> None:
    from django.contrib.sessions.backends.base import UpdateError

    start = backend()
    start["user"] = "alice"
    start.save()
    key = start.session_key
    slow, logout = backend(key), backend(key)
    assert slow["user"] == "alice" and logout["user"] == "alice"
    logout.flush()
    slow["cart"] = ["nails"]
    with pytest.raises(UpdateError):
        slow.save()
    assert backend(key).load() == {}
    assert not backend(key).exists(key)


def test_concurrent_saves_of_different_keys_both_survive(backend: Any) -> None:
    start = backend()
    start["shared"] = 0
    start.save()
    key = start.session_key
    one, two = backend(key), backend(key)
    one["a"], two["b"] = 1, 2
    assert one["shared"] == 0 and two["shared"] == 0
    one.save()
    two.save()  # conflicts with one's write, merges onto it
    assert two["a"] == 1  # the request goes on with what is stored
    assert dict(backend(key).items()) == {"shared": 0, "a": 1, "b": 2}
    stats = backend.engine().manager.stats
    assert stats.conflicts >= 1


def test_a_deleted_key_stays_deleted_after_a_merge(backend: Any) -> None:
    start = backend()
    start.update({"keep": 1, "drop": 2})
    start.save()
    one, two = backend(start.session_key), backend(start.session_key)
    del one["drop"]
    two["new"] = 3
    one.save()
    two.save()
    assert dict(backend(start.session_key).items()) == {"keep": 1, "new": 3}


# -- two processes on one real memcached -------------------------------------------------------


def test_two_processes_share_sessions_on_memcached(memcached_factory: MemcachedFactory) -> None:
    (server,) = memcached_factory(1)
    process_a = bind(memcached_engine(server.address))
    process_b = bind(memcached_engine(server.address))
    try:
        session = process_a()
        session["cart"] = ["pear"]
        session.save()
        key = session.session_key
        assert parse_session_id(key).node == "n1"

        on_b = process_b(key)
        assert on_b["cart"] == ["pear"]
        on_b["cart"] = [*on_b["cart"], "apple"]
        on_b.save()
        assert process_a(key)["cart"] == ["pear", "apple"]

        one, two = process_a(key), process_b(key)
        one["a"], two["b"] = 1, 2
        assert one["cart"] and two["cart"]  # both loaded before either saves
        errors: list[BaseException] = []

        def save(store: Any) -> None:
            try:
                store.save()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=save, args=(s,)) for s in (one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert not errors and not any(t.is_alive() for t in threads)
        assert dict(process_a(key).items()) == {"cart": ["pear", "apple"], "a": 1, "b": 2}

        process_b(key).flush()  # logout on B
        from django.contrib.sessions.backends.base import UpdateError

        with pytest.raises(UpdateError):
            one["late"] = True
            one.save()
        assert process_a(key).load() == {} and not process_b(key).exists(key)
    finally:
        process_a.engine().close()
        process_b.engine().close()


def test_the_session_lock_serializes_two_processes(memcached_factory: MemcachedFactory) -> None:
    (server,) = memcached_factory(1)
    process_a = bind(memcached_engine(server.address, locking="all", lock_timeout=0.3))
    process_b = bind(memcached_engine(server.address, locking="all", lock_timeout=0.3))
    try:
        start = process_a()
        start["n"] = 1
        start.save()
        key = start.session_key
        holder = process_a(key)
        holder.lock()
        assert holder["n"] == 1
        waiter = process_b(key)
        began = time.monotonic()
        with pytest.raises(LockTimeout):
            waiter.lock()
        assert 0.25 <= time.monotonic() - began < 3
        holder["n"] = 2
        holder.save()
        holder.unlock()
        waiter.lock()  # free now, and it reads what the holder wrote
        assert waiter["n"] == 2
        waiter.unlock()
        waiter.unlock()  # idempotent
    finally:
        process_a.engine().close()
        process_b.engine().close()


# -- the middleware: 503 on store failure, locks ------------------------------------------------


def _middleware(store_class: Any, view: Callable[[Any], Any]) -> Any:
    from sessionshare.django import SessionMiddleware

    middleware = SessionMiddleware(view)
    middleware.SessionStore = store_class
    return middleware


def test_store_down_engine_raises_and_middleware_answers_503() -> None:
    from django.conf import settings
    from django.http import HttpResponse
    from django.test import RequestFactory

    from tests.servers import free_port

    dead = bind(memcached_engine(f"127.0.0.1:{free_port()}", operation_timeout=0.2))
    try:
        key = "0123456789abcdef0123456789abcdef-n1"
        with pytest.raises(StoreError):
            dead(key).load()  # the engine alone: Django turns this into a 500

        def view(request: Any) -> HttpResponse:
            return HttpResponse(str(request.session.get("user")))

        request = RequestFactory().get("/me")
        request.COOKIES[settings.SESSION_COOKIE_NAME] = key
        response = _middleware(dead, view)(request)  # locking=auto: locks, fails, 503
        assert response.status_code == 503 and response["Retry-After"] == "1"

        unlocked = bind(
            memcached_engine(f"127.0.0.1:{free_port()}", locking="none", operation_timeout=0.2)
        )
        middleware = _middleware(unlocked, view)
        request = RequestFactory().get("/me")
        request.COOKIES[settings.SESSION_COOKIE_NAME] = key
        with pytest.raises(StoreError):
            view(_with_session(middleware, request))  # the lazy load in the view fails …
        assert middleware.process_exception(request, StoreError("down")).status_code == 503
        unlocked.engine().close()
    finally:
        dead.engine().close()


def _with_session(middleware: Any, request: Any) -> Any:
    assert middleware.process_request(request) is None
    return request


def test_middleware_locks_a_modifying_request(memcached_factory: MemcachedFactory) -> None:
    from django.conf import settings
    from django.http import HttpResponse
    from django.test import RequestFactory

    (server,) = memcached_factory(1)
    store_class = bind(memcached_engine(server.address, locking="all", lock_timeout=0.3))
    try:
        start = store_class()
        start["cart"] = []
        start.save()
        key = start.session_key
        inside = threading.Event()
        release = threading.Event()

        def slow_view(request: Any) -> HttpResponse:
            request.session["cart"] = [*request.session["cart"], "nails"]
            inside.set()
            release.wait(5)
            return HttpResponse("ok")

        def post(middleware: Any, out: list[Any]) -> None:
            request = RequestFactory().post("/cart")
            request.COOKIES[settings.SESSION_COOKIE_NAME] = key
            out.append(middleware(request))

        first: list[Any] = []
        thread = threading.Thread(target=post, args=(_middleware(store_class, slow_view), first))
        thread.start()
        assert inside.wait(5)
        second: list[Any] = []
        post(_middleware(store_class, lambda request: HttpResponse("never")), second)
        assert second[0].status_code == 503  # lock_timeout ran out while the first held it
        release.set()
        thread.join(10)
        assert first[0].status_code == 200
        assert store_class(key)["cart"] == ["nails"]
        third: list[Any] = []
        post(_middleware(store_class, lambda request: HttpResponse("free")), third)
        assert third[0].status_code == 200  # the lock was let go
    finally:
        store_class.engine().close()


def test_a_new_route_resends_the_cookie_without_a_write() -> None:
    from django.conf import settings
    from django.http import HttpResponse
    from django.test import RequestFactory

    shared = MemoryStore()
    on_node1 = bind(engine_on(SessionConfig(store="memory", route="node1"), shared))
    on_node2 = bind(engine_on(SessionConfig(store="memory", route="node2"), shared))
    session = on_node1()
    session["cart"] = ["pear"]
    session.save()
    assert session.session_key.endswith(".node1")
    writes = on_node2.engine().manager.stats.writes

    def view(request: Any) -> HttpResponse:
        return HttpResponse(json.dumps(request.session["cart"]))

    request = RequestFactory().get("/me")
    request.COOKIES[settings.SESSION_COOKIE_NAME] = session.session_key
    response = _middleware(on_node2, view)(request)
    assert response.content == b'["pear"]'
    cookie = response.cookies[settings.SESSION_COOKIE_NAME].value
    assert cookie == session.session_key.replace(".node1", ".node2")
    assert on_node2.engine().manager.stats.writes == writes  # the cookie only


def test_sticky_mode_is_refused_with_a_clear_error() -> None:
    from sessionshare.errors import NotYetAvailable

    with pytest.raises(NotYetAvailable, match="sticky"):
        engine_on(SessionConfig(store="memory", sticky=True))


# -- the example app through its contract ------------------------------------------------------


@pytest.fixture
def client() -> Iterator[Any]:
    import examples.django_app.wsgi  # noqa: F401  (migrations + demo users)
    from django.test import Client

    from sessionshare.django import reset_engine

    reset_engine()  # the example's own engine: settings.SESSIONSHARE, memory store
    yield Client()
    reset_engine()


def _post(client: Any, path: str, data: dict[str, Any] | None = None) -> Any:
    return client.post(path, json.dumps(data or {}), content_type="application/json")


def test_example_login_cart_messages_logout(client: Any) -> None:
    from django.test import Client

    assert client.get("/healthz").content == b"ok"
    assert client.get("/me").json() == {"user": None, "cart": [], "node": "node", "messages": []}

    assert _post(client, "/cart", {"item": "pear"}).json() == {"cart": ["pear"]}
    anonymous = client.cookies["sessionid"].value
    assert parse_session_id(anonymous) is not None

    bad = _post(client, "/login", {"username": "alice", "password": "nope"})
    assert bad.status_code == 401 and bad.json() == {"error": "bad credentials"}
    good = _post(client, "/login", {"username": "alice", "password": "wonderland"})
    assert good.status_code == 200 and good.json() == {"user": "alice"}
    logged_in = client.cookies["sessionid"].value
    assert parse_session_id(logged_in).token != parse_session_id(anonymous).token

    me = client.get("/me").json()
    assert (me["user"], me["cart"], me["messages"]) == ("alice", ["pear"], ["logged in"])
    assert client.get("/me").json()["messages"] == []  # shown once
    assert _post(client, "/cart", {"item": "apple"}).json() == {"cart": ["pear", "apple"]}

    attacker = Client()
    attacker.cookies["sessionid"] = anonymous  # the pre-login id is dead
    assert attacker.get("/me").json()["user"] is None

    response = _post(client, "/logout")
    assert response.status_code == 200 and response.json() == {"user": None}
    assert client.cookies["sessionid"].value == ""  # the cookie is expired
    replay = Client()
    replay.cookies["sessionid"] = logged_in
    assert replay.get("/me").json() == {"user": None, "cart": [], "node": "node", "messages": []}


def test_example_logout_racing_a_cart_update_stays_logged_out(client: Any) -> None:
    """The cart request loaded the session before the logout; its save must not undo it."""

    from django.test import override_settings

    from sessionshare.django import reset_engine

    with override_settings(SESSIONSHARE={"locking": "none"}):  # no lock: the race reaches
        reset_engine()  # the save, where the engine alone must refuse to write it back
        _run_logout_race(client)


def _run_logout_race(client: Any) -> None:
    from django.test import Client

    _post(client, "/login", {"username": "bob", "password": "builder"})
    _post(client, "/cart", {"item": "hammer"})
    cookie = client.cookies["sessionid"].value

    slow = Client(raise_request_exception=False)
    slow.cookies["sessionid"] = cookie
    outcome: list[Any] = []
    thread = threading.Thread(
        target=lambda: outcome.append(_post(slow, "/cart", {"item": "nails", "delay": 0.5}))
    )
    thread.start()
    time.sleep(0.2)
    assert _post(client, "/logout").json() == {"user": None}
    thread.join(10)
    assert not thread.is_alive() and outcome[0].status_code == 400  # SessionInterrupted
    replay = Client()
    replay.cookies["sessionid"] = cookie
    me = replay.get("/me").json()
    assert me["user"] is None and me["cart"] == []
