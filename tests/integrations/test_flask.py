"""The Flask integration: ``flask.session`` is the shared session.

In-process tests drive real Flask apps with Flask's test client on the memory store; the
shared-store tests run two separate Flask app objects (two nodes) against a real memcached,
and the example app is driven through the contract every example shares.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, timedelta
from typing import Any

import examples.flask_app
import pytest
from examples.flask_app import create_app
from flask import Flask, Response, flash, get_flashed_messages, jsonify, redirect, session
from flask.testing import FlaskClient
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from werkzeug.test import TestResponse

from sessionshare.errors import ConfigError
from sessionshare.flask import FlaskJSONSerializer, SessionShare
from sessionshare.web.flask import FlaskSession
from tests.conftest import MemcachedFactory
from tests.servers import MemcachedServer, free_port


@pytest.fixture(autouse=True)
def _no_sessionshare_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's own SESSIONSHARE_* variables must not leak into these apps."""
    import os

    for name in list(os.environ):
        if name.startswith("SESSIONSHARE_"):
            monkeypatch.delenv(name)


# -- a test app ---------------------------------------------------------------------------------


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


def _flask_session() -> FlaskSession:
    current = session._get_current_object()  # type: ignore[attr-defined]
    assert isinstance(current, FlaskSession)
    return current


def make_app(*, flask_config: dict[str, Any] | None = None, **options: Any) -> Flask:
    """A small app exercising every part of ``flask.session``; options go to SessionShare."""
    app = Flask(__name__)
    app.config.update(flask_config or {})
    SessionShare(app, **options)
    login_manager = LoginManager(app)
    login_manager.user_loader(lambda user_id: User(user_id))

    @app.get("/get/<key>")
    def get(key: str) -> Response:
        current = _flask_session()
        return jsonify(
            value=session.get(key),
            new=session.new,
            permanent=session.permanent,
            max_inactive=current.max_inactive,
            id=current.id,
        )

    @app.post("/set/<key>/<value>")
    def set_(key: str, value: str) -> Response:
        session[key] = value
        return jsonify(ok=True)

    @app.post("/append/<item>")
    def append(item: str) -> Response:
        session.setdefault("items", []).append(item)  # a nested mutation, not a __setitem__
        return jsonify(items=session["items"])

    @app.post("/permanent/<on>")
    def permanent(on: str) -> Response:
        session.permanent = on == "on"
        return jsonify(ok=True)

    @app.post("/regenerate")
    def regenerate() -> Response:
        _flask_session().regenerate()
        return jsonify(id=_flask_session().id)

    @app.post("/regenerate-like-flask-session")
    def regenerate_like_flask_session() -> Response:
        app.session_interface.regenerate(session)  # type: ignore[attr-defined]
        return jsonify(id=_flask_session().id)

    @app.post("/clear")
    def clear() -> Response:
        session.clear()
        return jsonify(ok=True)

    @app.post("/invalidate")
    def invalidate() -> Response:
        _flask_session().invalidate()
        return jsonify(ok=True)

    @app.post("/clear-then-set")
    def clear_then_set() -> Response:
        session.clear()
        session["after"] = "yes"
        return jsonify(ok=True)

    @app.post("/pop-all")
    def pop_all() -> Response:
        for key in list(session):
            session.pop(key)
        return jsonify(ok=True)

    @app.post("/boom")
    def boom() -> Response:
        session["boom"] = "1"
        raise RuntimeError("the view failed")

    @app.post("/slow")
    def slow() -> Response:
        session["slow"] = "1"
        time.sleep(1.0)
        return jsonify(ok=True)

    @app.get("/untouched")
    def untouched() -> str:
        return "no session here"

    @app.get("/asset.css")
    def asset() -> Response:
        session["from_asset"] = "1"  # an ignored request: never saved, no cookie
        return jsonify(seen=session.get("k"))

    @app.get("/flash")
    def flash_then_redirect() -> Any:
        flash("saved!")
        return redirect("/messages")

    @app.get("/messages")
    def messages() -> Response:
        return jsonify(messages=get_flashed_messages())

    @app.post("/login/<name>")
    def login(name: str) -> Response:
        login_user(User(name))  # no explicit regenerate: the signal does it
        return jsonify(id=_flask_session().id)

    @app.get("/whoami")
    def whoami() -> Response:
        return jsonify(user=current_user.id if current_user.is_authenticated else None)

    @app.post("/logout")
    def logout() -> Response:
        session.clear()
        logout_user()
        return jsonify(ok=True)

    return app


def set_cookies(response: TestResponse) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def cookie_value(response: TestResponse, name: str = "session") -> str | None:
    for header in set_cookies(response):
        key, _, rest = header.partition("=")
        if key == name:
            return rest.split(";")[0]
    return None


def with_cookie(app: Flask, value: str, name: str = "session") -> FlaskClient:
    """A fresh browser holding only ``name=value`` (an old or a forged id)."""
    client = app.test_client()
    client.set_cookie(name, value)
    return client


# -- flask.session basics -------------------------------------------------------------------------


def test_values_survive_across_requests_and_nested_mutations_count() -> None:
    client = make_app().test_client()
    first = client.post("/set/k/v1")
    assert cookie_value(first) is not None
    assert client.get("/get/k").json["value"] == "v1"
    client.post("/append/a")
    client.post("/append/b")
    assert client.post("/append/c").json["items"] == ["a", "b", "c"]
    assert client.get("/get/items").json["value"] == ["a", "b", "c"]


def test_new_is_true_only_for_a_fresh_session() -> None:
    client = make_app().test_client()
    assert client.get("/get/k").json["new"] is True
    client.post("/set/k/v")
    assert client.get("/get/k").json["new"] is False


def test_cookie_name_defaults_to_session_and_follows_SESSION_COOKIE_NAME() -> None:
    default = make_app().test_client().post("/set/k/v")
    assert cookie_value(default, "session") is not None
    renamed_app = make_app(flask_config={"SESSION_COOKIE_NAME": "flasksid"})
    client = renamed_app.test_client()
    response = client.post("/set/k/v")
    assert cookie_value(response, "flasksid") is not None
    assert cookie_value(response, "session") is None
    assert client.get("/get/k").json["value"] == "v"


def test_cookie_flags_default_and_from_flask_config() -> None:
    header = set_cookies(make_app().test_client().post("/set/k/v"))[0]
    assert "; HttpOnly" in header and "; SameSite=Lax" in header and "; Path=/" in header
    assert "Max-Age" not in header  # not permanent: a browser-session cookie
    assert "Secure" not in header  # http
    https = make_app().test_client().post("/set/k/v", base_url="https://localhost")
    assert "; Secure" in set_cookies(https)[0]  # "auto": Secure over https

    app = make_app(
        flask_config={
            "SESSION_COOKIE_PATH": "/shop",
            "SESSION_COOKIE_HTTPONLY": False,
            "SESSION_COOKIE_SAMESITE": "strict",
            "SESSION_COOKIE_SECURE": True,
            "SESSION_COOKIE_DOMAIN": "example.test",
            "SESSION_COOKIE_PARTITIONED": True,
        }
    )
    header = set_cookies(app.test_client().post("/set/k/v"))[0]
    assert "; Path=/shop" in header
    assert "HttpOnly" not in header
    assert "; SameSite=Strict" in header
    assert "; Secure" in header
    assert "; Domain=example.test" in header
    assert "; Partitioned" in header


def test_cookie_path_falls_back_to_APPLICATION_ROOT() -> None:
    app = make_app(flask_config={"APPLICATION_ROOT": "/root"})
    assert "; Path=/root" in set_cookies(app.test_client().post("/set/k/v"))[0]


def test_permanent_session_gets_max_age_and_its_lifetime_then_can_be_turned_off() -> None:
    app = make_app(flask_config={"PERMANENT_SESSION_LIFETIME": timedelta(minutes=10)})
    client = app.test_client()
    response = client.post("/permanent/on")
    assert "; Max-Age=600;" in set_cookies(response)[0]
    state = client.get("/get/k")
    assert state.json["permanent"] is True
    assert state.json["max_inactive"] == 600
    assert "; Max-Age=600;" in set_cookies(state)[0]  # re-sent each response: it slides
    off = client.post("/permanent/off")
    assert "Max-Age" not in set_cookies(off)[0]  # re-sent as a browser-session cookie
    assert client.get("/get/k").json["max_inactive"] == 1800  # back to max_inactive
    assert set_cookies(client.get("/get/k")) == []


def test_permanent_lifetime_given_as_seconds() -> None:
    app = make_app(flask_config={"PERMANENT_SESSION_LIFETIME": 120})
    assert "; Max-Age=120;" in set_cookies(app.test_client().post("/permanent/on"))[0]


def test_vary_cookie_only_when_the_session_was_used() -> None:
    app = make_app()
    plain = Flask(__name__)  # no Flask-Login: its after_request hook reads the session
    SessionShare(plain)

    @plain.get("/untouched")
    def untouched() -> str:
        return "x"

    @plain.get("/read")
    def read() -> Response:
        return jsonify(value=session.get("k"))

    client = plain.test_client()
    assert "Cookie" not in client.get("/untouched").headers.get("Vary", "")
    assert "Cookie" in client.get("/read").headers.get("Vary", "")
    assert "Cookie" in app.test_client().post("/set/k/v").headers.get("Vary", "")


@pytest.mark.parametrize("route", ["/regenerate", "/regenerate-like-flask-session"])
def test_regenerate_changes_the_id_keeps_the_data_and_kills_the_old_id(route: str) -> None:
    app = make_app()
    client = app.test_client()
    old = cookie_value(client.post("/set/k/v"))
    assert old is not None
    response = client.post(route)
    new = cookie_value(response)
    assert new is not None and new != old
    assert response.json["id"] == new
    assert client.get("/get/k").json["value"] == "v"
    stale = with_cookie(app, old).get("/get/k").json
    assert stale["value"] is None and stale["new"] is True


@pytest.mark.parametrize("route", ["/clear", "/invalidate", "/pop-all"])
def test_ending_the_session_expires_the_cookie_and_the_old_id(route: str) -> None:
    app = make_app()
    client = app.test_client()
    old = cookie_value(client.post("/set/k/v"))
    assert old is not None
    ended = client.post(route)
    header = set_cookies(ended)[0]
    assert header.startswith("session=;") and "Max-Age=0" in header
    assert client.get_cookie("session") is None
    assert client.get("/get/k").json["new"] is True
    assert with_cookie(app, old).get("/get/k").json["value"] is None


def test_data_stored_after_clear_moves_to_a_new_id() -> None:
    app = make_app()
    client = app.test_client()
    old = cookie_value(client.post("/set/k/v"))
    response = client.post("/clear-then-set")
    new = cookie_value(response)
    assert new and new != old
    assert client.get("/get/k").json["value"] is None
    assert client.get("/get/after").json["value"] == "yes"
    assert with_cookie(app, old or "").get("/get/after").json["value"] is None


def test_flash_survives_a_redirect_and_shows_once() -> None:
    client = make_app().test_client()
    shown = client.get("/flash", follow_redirects=True)
    assert shown.json["messages"] == ["saved!"]
    assert client.get("/messages").json["messages"] == []


def test_flask_login_login_rotates_the_id_and_logout_ends_the_session() -> None:
    app = make_app()
    client = app.test_client()
    before = cookie_value(client.post("/set/cart/apple"))
    login = client.post("/login/alice")
    after = cookie_value(login)
    assert after and after != before  # regenerated on user_logged_in
    assert client.get("/whoami").json["user"] == "alice"
    assert client.get("/get/cart").json["value"] == "apple"  # data kept through login
    assert with_cookie(app, before or "").get("/whoami").json["user"] is None

    logout = client.post("/logout")
    assert "Max-Age=0" in set_cookies(logout)[0]
    assert client.get("/whoami").json["user"] is None
    assert client.get("/get/cart").json["value"] is None
    assert with_cookie(app, after).get("/whoami").json["user"] is None  # the id is dead


def test_regenerate_on_login_can_be_turned_off() -> None:
    app = make_app(regenerate_on_login=False)
    client = app.test_client()
    before = cookie_value(client.post("/set/k/v"))
    assert cookie_value(client.post("/login/bob")) is None  # same id: no new cookie
    assert client.get("/get/id").json["id"] == before
    assert client.get("/whoami").json["user"] == "bob"


def test_a_view_that_raises_releases_the_lock() -> None:
    app = make_app(locking="all", lock_timeout="3s")
    app.testing = True  # the exception propagates out of the test client
    client = app.test_client()
    client.post("/set/k/v")
    with pytest.raises(RuntimeError, match="the view failed"):
        client.post("/boom")
    started = time.monotonic()
    response = client.get("/get/k")
    assert response.status_code == 200
    assert time.monotonic() - started < 1.0  # not after lock_timeout (or a 503)
    assert not SessionShare.driver(app).manager.holds_locks


def test_a_view_that_raises_into_a_500_releases_the_lock_too() -> None:
    app = make_app(locking="all", lock_timeout="3s")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    client.post("/set/k/v")
    assert client.post("/boom").status_code == 500
    started = time.monotonic()
    assert client.get("/get/k").status_code == 200
    assert time.monotonic() - started < 1.0
    assert not SessionShare.driver(app).manager.holds_locks


def test_a_lock_timeout_answers_503_with_retry_after() -> None:
    app = make_app(locking="all", lock_timeout="300ms")
    first = app.test_client()
    first.post("/set/k/v")
    cookie = first.get_cookie("session")
    assert cookie is not None
    holder = threading.Thread(target=lambda: with_cookie(app, cookie.value).post("/slow"))
    holder.start()
    try:
        time.sleep(0.3)  # the holder has the lock now
        blocked = with_cookie(app, cookie.value).get("/get/k")
    finally:
        holder.join(timeout=10)
    assert blocked.status_code == 503
    assert blocked.headers["Retry-After"] == "1"
    assert set_cookies(blocked) == []
    assert first.get("/get/slow").json["value"] == "1"  # the holder's change was saved


def test_ignored_requests_neither_load_nor_save_and_do_not_crash() -> None:
    client = make_app().test_client()
    client.post("/set/k/v")
    response = client.get("/asset.css")
    assert response.status_code == 200
    assert response.json["seen"] is None  # not loaded
    assert set_cookies(response) == []
    assert client.get("/get/from_asset").json["value"] is None  # not saved


@pytest.mark.parametrize(
    "forged",
    ["garbage!!", "x" * 300, "0123456789abcdef0123456789abcdef", "'; DROP", "a.b.c-d-e"],
)
def test_a_forged_cookie_gives_a_fresh_session_not_a_500(forged: str) -> None:
    app = make_app()
    client = with_cookie(app, forged)
    state = client.get("/get/k")
    assert state.status_code == 200
    assert state.json["new"] is True and state.json["value"] is None
    fresh = cookie_value(client.post("/set/k/v"))
    assert fresh and fresh != forged


# -- options ----------------------------------------------------------------------------------


def test_app_config_sessionshare_options_are_honoured_over_flask_keys() -> None:
    app = make_app(
        flask_config={
            "SESSION_COOKIE_NAME": "flaskname",
            "SESSIONSHARE_COOKIE_NAME": "sharedname",
            "SESSIONSHARE_MAX_INACTIVE": "10m",
            "SESSIONSHARE_KEY_PREFIX": "shop",
        }
    )
    config = SessionShare.driver(app).config
    assert (config.cookie_name, config.max_inactive, config.key_prefix) == (
        "sharedname", 600.0, "shop"
    )  # fmt: skip
    assert cookie_value(app.test_client().post("/set/k/v"), "sharedname") is not None


def test_keywords_win_over_env_which_wins_over_app_config(monkeypatch: pytest.MonkeyPatch) -> None:
    flask_config = {"SESSIONSHARE_COOKIE_NAME": "fromconfig", "SESSIONSHARE_LOCKING": "none"}
    monkeypatch.setenv("SESSIONSHARE_COOKIE_NAME", "fromenv")
    assert SessionShare.driver(make_app(flask_config=flask_config)).config.cookie_name == "fromenv"
    app = make_app(flask_config=flask_config, cookie_name="fromkw")
    assert SessionShare.driver(app).config.cookie_name == "fromkw"
    assert SessionShare.driver(app).config.locking == "none"
    assert cookie_value(app.test_client().post("/set/k/v"), "fromkw") is not None


def test_init_app_later_and_a_bad_option_fails_at_start_up() -> None:
    ext = SessionShare(max_inactive="5m")
    app = Flask(__name__)
    ext.init_app(app)
    assert SessionShare.driver(app).config.max_inactive == 300
    with pytest.raises(ConfigError, match="locking"):
        SessionShare(Flask(__name__), locking="sometimes")
    bad = Flask(__name__)
    bad.config["SESSIONSHARE_STORE"] = "floppy"
    with pytest.raises(ConfigError, match="store"):
        SessionShare(bad)


def test_flask_json_serializer_keeps_tuples_and_datetimes() -> None:
    from datetime import datetime

    serializer = FlaskJSONSerializer()
    value = {"pair": ("a", 1), "when": datetime(2024, 1, 2, tzinfo=UTC), "raw": b"\x00"}
    assert serializer.loads(serializer.dumps(value)) == value
    app = make_app(serializer="sessionshare.flask.FlaskJSONSerializer")
    client = app.test_client()
    client.get("/flash")
    assert client.get("/messages").json["messages"] == ["saved!"]


# -- two nodes sharing a real memcached ----------------------------------------------------------


class Browser:
    """One user's cookie, carried between app nodes as a balancer would."""

    def __init__(self, name: str = "session") -> None:
        self.name = name
        self.cookie: str | None = None

    def open(self, app: Flask, method: str, path: str, **kwargs: Any) -> TestResponse:
        headers = {"Cookie": f"{self.name}={self.cookie}"} if self.cookie else {}
        response = app.test_client(use_cookies=False).open(
            path, method=method, headers=headers, **kwargs
        )
        for header in set_cookies(response):
            key, _, rest = header.partition("=")
            if key == self.name:
                self.cookie = None if "Max-Age=0" in header else rest.split(";")[0]
        return response


def nodes_of(servers: list[MemcachedServer]) -> str:
    return " ".join(f"n{i}:{server.address}" for i, server in enumerate(servers, 1))


@pytest.fixture
def two_nodes(
    memcached_factory: MemcachedFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Flask, Flask, list[MemcachedServer]]]:
    """The example app twice (two nodes), each its own driver, on two shared memcacheds."""
    servers = memcached_factory(2)
    monkeypatch.setenv("SESSIONSHARE_STORE", "memcached")
    monkeypatch.setenv("SESSIONSHARE_NODES", nodes_of(servers))
    monkeypatch.setenv("SESSIONSHARE_NODE_NAME", "node1")
    node1 = create_app()
    monkeypatch.setenv("SESSIONSHARE_NODE_NAME", "node2")
    node2 = create_app()
    try:
        yield node1, node2, servers
    finally:
        SessionShare.close(node1)
        SessionShare.close(node2)


def test_two_app_objects_share_one_session_through_memcached(
    two_nodes: tuple[Flask, Flask, list[MemcachedServer]],
) -> None:
    node1, node2, _ = two_nodes
    assert SessionShare.driver(node1) is not SessionShare.driver(node2)
    browser = Browser()
    assert browser.open(node2, "POST", "/cart", json={"item": "apple"}).status_code == 200
    anonymous = browser.cookie
    login = browser.open(
        node1, "POST", "/login", json={"username": "alice", "password": "wonderland"}
    )
    assert login.json == {"user": "alice"}
    assert browser.cookie and browser.cookie != anonymous
    browser.open(node1, "POST", "/cart", json={"item": "pear"})
    me = browser.open(node2, "GET", "/me").json
    assert me == {
        "user": "alice",
        "cart": ["apple", "pear"],
        "node": "node2",
        "messages": ["logged in"],
    }
    assert browser.open(node1, "GET", "/me").json["node"] == "node1"

    logged_in = browser.cookie
    assert browser.open(node2, "POST", "/logout").json == {"user": None}
    assert browser.cookie is None
    replay = Browser()
    replay.cookie = logged_in  # node1, with the logged-in id: logged out there too
    assert replay.open(node1, "GET", "/me").json == {"user": None, "cart": [], "node": "node1"}


def test_app_config_selects_memcached(memcached_factory: MemcachedFactory) -> None:
    servers = memcached_factory(1)
    apps = []
    for _ in range(2):
        config = {"SESSIONSHARE_STORE": "memcached", "SESSIONSHARE_NODES": nodes_of(servers)}
        apps.append(make_app(flask_config=config))
    try:
        assert all(SessionShare.driver(app).config.store == "memcached" for app in apps)
        browser = Browser()
        browser.open(apps[0], "POST", "/set/k/shared")
        assert browser.cookie and browser.cookie.endswith("-n1")  # placed on memcached n1
        assert browser.open(apps[1], "GET", "/get/k").json["value"] == "shared"
    finally:
        for app in apps:
            SessionShare.close(app)


def test_sticky_backup_is_written_when_the_response_is_closed(
    memcached_factory: MemcachedFactory,
) -> None:
    """Sticky mode keeps the live session on its node and backs it up after the response:
    the backup (finish, on the response's close) is what another node reads."""
    servers = memcached_factory(1)
    nodes = nodes_of(servers)
    node1 = make_app(store="memcached", nodes=nodes, sticky=True, route="flask1")
    node2 = make_app(store="memcached", nodes=nodes, sticky=True, route="flask2")
    try:
        client = node1.test_client(use_cookies=False)
        response = client.post("/set/k/sticky", buffered=True)  # buffered: closed at once
        sid = cookie_value(response)
        assert sid and sid.endswith(".flask1")
        moved = Browser()
        moved.cookie = sid
        assert moved.open(node2, "GET", "/get/k").json["value"] == "sticky"
        assert moved.cookie and moved.cookie.endswith(".flask2")  # the route follows
    finally:
        SessionShare.close(node1)
        SessionShare.close(node2)


def test_memcached_down_answers_503_with_retry_after(memcached_factory: MemcachedFactory) -> None:
    servers = memcached_factory(1)
    app = make_app(store="memcached", nodes=nodes_of(servers), operation_timeout="500ms")
    try:
        browser = Browser()
        browser.open(app, "POST", "/set/k/v")
        assert browser.open(app, "GET", "/get/k").json["value"] == "v"
        servers[0].kill()
        started = time.monotonic()
        loading = browser.open(app, "GET", "/get/k")  # fails while opening the session
        assert loading.status_code == 503
        assert loading.headers["Retry-After"] == "1"
        assert set_cookies(loading) == []
        saving = Browser().open(app, "POST", "/set/k/v")  # no cookie: fails while saving
        assert saving.status_code == 503
        assert saving.headers["Retry-After"] == "1"
        assert set_cookies(saving) == []
        assert time.monotonic() - started < 10
    finally:
        SessionShare.close(app)


def test_a_closed_store_port_answers_503_not_a_fresh_session() -> None:
    app = make_app(
        store="memcached", nodes=f"n1:127.0.0.1:{free_port()}", operation_timeout="300ms"
    )
    try:
        browser = Browser()
        browser.cookie = "0123456789abcdef0123456789abcdef-n1"  # names the dead node
        response = browser.open(app, "GET", "/get/k")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert b"503" in response.data
    finally:
        SessionShare.close(app)


# -- the example app, through the contract ------------------------------------------------------


def test_example_module_exposes_a_flask_app() -> None:
    assert isinstance(examples.flask_app.app, Flask)
    client = examples.flask_app.app.test_client()
    assert client.get("/healthz").data == b"ok"


def test_example_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONSHARE_NODE_NAME", "nodeX")
    app = create_app()
    browser = Browser()
    health = browser.open(app, "GET", "/healthz")
    assert (health.status_code, health.data) == (200, b"ok")
    assert browser.open(app, "GET", "/me").json == {"user": None, "cart": [], "node": "nodeX"}
    bad = browser.open(app, "POST", "/login", json={"username": "alice", "password": "nope"})
    assert (bad.status_code, bad.json) == (401, {"error": "bad credentials"})
    assert browser.open(app, "POST", "/login", json={}).status_code == 401

    assert browser.open(app, "POST", "/cart", json={"item": "apple"}).json == {"cart": ["apple"]}
    anonymous = browser.cookie
    login = browser.open(app, "POST", "/login", json={"username": "bob", "password": "builder"})
    assert (login.status_code, login.json) == (200, {"user": "bob"})
    assert browser.cookie and browser.cookie != anonymous  # fixation: the id rotates
    me = browser.open(app, "GET", "/me").json
    assert me == {"user": "bob", "cart": ["apple"], "node": "nodeX", "messages": ["logged in"]}
    assert "messages" not in browser.open(app, "GET", "/me").json  # shown once
    old = Browser()
    old.cookie = anonymous
    assert old.open(app, "GET", "/me").json["cart"] == []  # the pre-login id is dead

    started = time.monotonic()
    slow = browser.open(app, "POST", "/cart", json={"item": "pear", "delay": 0.3})
    assert slow.json == {"cart": ["apple", "pear"]}
    assert time.monotonic() - started >= 0.3

    logged_in = browser.cookie
    logout = browser.open(app, "POST", "/logout")
    assert (logout.status_code, logout.json) == (200, {"user": None})
    assert browser.cookie is None
    assert browser.open(app, "GET", "/me").json == {"user": None, "cart": [], "node": "nodeX"}
    replay = Browser()
    replay.cookie = logged_in
    assert replay.open(app, "GET", "/me").json == {"user": None, "cart": [], "node": "nodeX"}


@pytest.mark.parametrize("locking", ["auto", "none"])
def test_example_logout_is_not_undone_by_a_racing_cart_update(
    locking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONSHARE_LOCKING", locking)
    app = create_app()
    browser = Browser()
    browser.open(app, "POST", "/login", json={"username": "alice", "password": "wonderland"})
    browser.open(app, "POST", "/cart", json={"item": "apple"})
    logged_in = browser.cookie
    racer = Browser()
    racer.cookie = logged_in
    slow = threading.Thread(
        target=lambda: racer.open(app, "POST", "/cart", json={"item": "pear", "delay": 0.5})
    )
    slow.start()
    try:
        time.sleep(0.15)  # the cart update has loaded the session and is sleeping
        assert browser.open(app, "POST", "/logout").json == {"user": None}
    finally:
        slow.join(timeout=10)
    assert not slow.is_alive()
    replay = Browser()
    replay.cookie = logged_in
    assert replay.open(app, "GET", "/me").json == {"user": None, "cart": [], "node": "node"}
