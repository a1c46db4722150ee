"""Starlette and FastAPI: ``sessionshare.starlette.SessionMiddleware`` as a drop-in.

The first group runs the SAME test body against Starlette's own middleware and ours
(only the class changes, as only the import changes in a user's app); where the two
differ by design (the cookie carries an id, not the data; a cleared session is ended in
the store; the cookie slides on every response) the test says so for each class. The
rest covers what only ours does: the FastAPI dependency, WebSockets, the lifespan close,
a store that is down, and the FastAPI example on two real uvicorn processes sharing
one real memcached.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import starlette.middleware.sessions
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

import sessionshare.starlette
from sessionshare.config import SessionConfig
from sessionshare.core.ids import parse_session_id
from sessionshare.errors import ConfigError
from sessionshare.starlette import Session, get_session
from sessionshare.stores.base import BlockingStoreAdapter
from sessionshare.stores.memory import MemoryStore
from sessionshare.web.starlette import starlette_options
from tests.conftest import MemcachedFactory, ProcessFactory
from tests.servers import ManagedProcess

with warnings.catch_warnings():  # Starlette 1.10 prefers httpx2 for its TestClient
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]
STARLETTE = starlette.middleware.sessions.SessionMiddleware
OURS = sessionshare.starlette.SessionMiddleware
BOTH = pytest.mark.parametrize("middleware", [STARLETTE, OURS], ids=["starlette", "sessionshare"])
FOURTEEN_DAYS = 14 * 24 * 60 * 60


@pytest.fixture(autouse=True)
def _no_sessionshare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Options come from the test, not from whatever the shell exported."""
    for name in list(os.environ):
        if name.startswith("SESSIONSHARE_"):
            monkeypatch.delenv(name)


# -- a Starlette app as Starlette's own tests write it --------------------------------------
# One change: ``dict(request.session)`` in the responses, because ours is a Mapping, not
# a dict subclass (test_request_session_is_a_mapping_not_a_dict says what that means).


def view_session(request: Request) -> JSONResponse:
    return JSONResponse({"session": dict(request.session)})


async def update_session(request: Request) -> JSONResponse:
    data = await request.json()
    request.session.update(data)
    return JSONResponse({"session": dict(request.session)})


async def clear_session(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"session": dict(request.session)})


async def session_over_websocket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"session": dict(websocket.session)})
    await websocket.close()


ROUTES = [
    Route("/view_session", endpoint=view_session),
    Route("/update_session", endpoint=update_session, methods=["POST"]),
    Route("/clear_session", endpoint=clear_session, methods=["POST"]),
    WebSocketRoute("/ws", endpoint=session_over_websocket),
]


def starlette_app(middleware: type, *args: Any, **kwargs: Any) -> Starlette:
    return Starlette(routes=ROUTES, middleware=[Middleware(middleware, *args, **kwargs)])


def parse_set_cookie(header: str) -> tuple[str, str, dict[str, str]]:
    """``(name, value, attributes)``; attribute names lowercased (RFC 6265: any case)."""
    first, *rest = (part.strip() for part in header.split(";"))
    name, _, value = first.partition("=")
    attributes = {}
    for part in rest:
        key, _, attr_value = part.partition("=")
        attributes[key.strip().lower()] = attr_value.strip()
    return name, value, attributes


def cookie(value: str) -> dict[str, str]:
    """A ``Cookie`` header for one request (per-request ``cookies=`` is deprecated)."""
    return {"Cookie": f"session={value}"}


def only_set_cookie(response: httpx.Response) -> tuple[str, str, dict[str, str]]:
    headers = response.headers.get_list("set-cookie")
    assert len(headers) == 1, headers
    return parse_set_cookie(headers[0])


# -- the same test body, Starlette's middleware and ours ------------------------------------


@BOTH
def test_set_read_clear_with_starlettes_cookie(middleware: type) -> None:
    client = TestClient(starlette_app(middleware, secret_key="example"))

    response = client.get("/view_session")
    assert response.json() == {"session": {}}
    assert response.headers.get_list("set-cookie") == []  # untouched and empty: no cookie

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    name, value, attributes = only_set_cookie(response)
    assert name == "session"
    assert attributes["max-age"] == str(FOURTEEN_DAYS)
    assert attributes["path"] == "/"
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "lax"
    assert "secure" not in attributes and "domain" not in attributes
    assert "partitioned" not in attributes
    if middleware is OURS:  # inherent: the cookie names a stored session, it holds no data
        assert parse_session_id(value) is not None
    else:
        assert b'"some"' in base64.b64decode(value.split(".")[0])

    response = client.get("/view_session")
    assert response.json() == {"session": {"some": "data"}}
    if middleware is OURS:  # ours slides with the store's TTL on every response
        assert only_set_cookie(response)[2]["max-age"] == str(FOURTEEN_DAYS)
    else:  # Starlette 1.x re-sends its cookie only when the session was modified
        assert response.headers.get_list("set-cookie") == []

    logged_in = client.cookies["session"]
    response = client.post("/clear_session")
    assert response.json() == {"session": {}}
    name, _, attributes = only_set_cookie(response)
    assert name == "session" and "expires" in attributes  # the browser forgets it
    assert "session" not in client.cookies
    assert client.get("/view_session").json() == {"session": {}}

    replayed = TestClient(client.app).get("/view_session", headers=cookie(logged_in))
    if middleware is OURS:  # a copied cookie is dead too: clear() ended the stored session
        assert replayed.json() == {"session": {}}
    else:  # a signed cookie stays valid until max_age, whoever kept a copy
        assert replayed.json() == {"session": {"some": "data"}}


@BOTH
def test_https_only_cookie_is_secure_and_not_sent_over_http(middleware: type) -> None:
    app = starlette_app(middleware, secret_key="example", https_only=True)
    insecure = TestClient(app, base_url="http://testserver")
    secure = TestClient(app, base_url="https://testserver")

    response = insecure.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    assert "secure" in only_set_cookie(response)[2]
    assert insecure.get("/view_session").json() == {"session": {}}

    secure.post("/update_session", json={"some": "data"})
    assert secure.get("/view_session").json() == {"session": {"some": "data"}}
    secure.post("/clear_session")
    assert secure.get("/view_session").json() == {"session": {}}


@BOTH
def test_same_site_strict(middleware: type) -> None:
    client = TestClient(starlette_app(middleware, secret_key="example", same_site="strict"))
    response = client.post("/update_session", json={"some": "data"})
    assert only_set_cookie(response)[2]["samesite"].lower() == "strict"
    assert client.get("/view_session").json() == {"session": {"some": "data"}}


@BOTH
def test_same_site_none_with_https_only(middleware: type) -> None:
    app = starlette_app(middleware, secret_key="example", same_site="none", https_only=True)
    response = TestClient(app, base_url="https://testserver").post(
        "/update_session", json={"some": "data"}
    )
    attributes = only_set_cookie(response)[2]
    assert attributes["samesite"].lower() == "none" and "secure" in attributes


@BOTH
def test_domain_cookie(middleware: type) -> None:
    app = starlette_app(middleware, secret_key="example", domain=".example.com")
    client = TestClient(app, base_url="http://www.example.com")
    response = client.post("/update_session", json={"some": "data"})
    assert only_set_cookie(response)[2]["domain"] == ".example.com"
    assert client.get("/view_session").json() == {"session": {"some": "data"}}


@BOTH
def test_cookie_path_for_an_app_mounted_under_a_prefix(middleware: type) -> None:
    second_app = starlette_app(middleware, secret_key="example", path="/second_app")
    app = Starlette(routes=[Mount("/second_app", app=second_app)])
    client = TestClient(app, base_url="http://testserver/second_app")
    response = client.post("/update_session", json={"some": "data"})
    assert response.status_code == 200
    assert only_set_cookie(response)[2]["path"] == "/second_app"
    assert client.get("/view_session").json() == {"session": {"some": "data"}}


@BOTH
def test_max_age_none_is_a_browser_session_cookie(middleware: type) -> None:
    client = TestClient(starlette_app(middleware, secret_key="example", max_age=None))
    response = client.post("/update_session", json={"some": "data"})
    attributes = only_set_cookie(response)[2]
    assert "max-age" not in attributes and "expires" not in attributes
    assert client.get("/view_session").json() == {"session": {"some": "data"}}


@BOTH
def test_partitioned_cookie(middleware: type) -> None:
    app = starlette_app(middleware, secret_key="example", https_only=True, partitioned=True)
    response = TestClient(app, base_url="https://testserver").post(
        "/update_session", json={"some": "data"}
    )
    assert "partitioned" in only_set_cookie(response)[2]


@BOTH
def test_positional_arguments_in_starlettes_order(middleware: type) -> None:
    # app, secret_key, session_cookie, max_age, path, same_site, https_only, domain
    app = starlette_app(middleware, "example", "sid", 60, "/", "strict", False, None)
    client = TestClient(app)
    response = client.post("/update_session", json={"some": "data"})
    name, _, attributes = only_set_cookie(response)
    assert name == "sid" and attributes["max-age"] == "60"
    assert attributes["samesite"].lower() == "strict"
    assert client.get("/view_session").json() == {"session": {"some": "data"}}


@BOTH
def test_add_middleware_and_a_secret_object(middleware: type) -> None:
    app = Starlette(routes=ROUTES)
    app.add_middleware(middleware, secret_key=Secret("example"), session_cookie="app_session")
    client = TestClient(app)
    assert only_set_cookie(client.post("/update_session", json={"a": 1}))[0] == "app_session"
    assert client.get("/view_session").json() == {"session": {"a": 1}}


@BOTH
def test_forged_cookie_gives_a_fresh_empty_session(middleware: type) -> None:
    client = TestClient(starlette_app(middleware, secret_key="example"))
    for forged in ("not-a-session", "0" * 32, "eyJzb21lIjogImRhdGEifQ==.forged.sig"):
        response = client.get("/view_session", headers=cookie(forged))
        assert response.status_code == 200 and response.json() == {"session": {}}


@BOTH
def test_websocket_sees_the_session(middleware: type) -> None:
    client = TestClient(starlette_app(middleware, secret_key="example"))
    client.post("/update_session", json={"user": "alice"})
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"session": {"user": "alice"}}


@BOTH
def test_request_session_is_a_dict(middleware: type) -> None:
    """``JSONResponse(request.session)`` and ``isinstance(..., dict)`` work as in Starlette."""

    async def raw(request: Request) -> JSONResponse:
        request.session["some"] = "data"
        assert isinstance(request.session, dict)
        return JSONResponse({"session": request.session})

    app = Starlette(routes=[Route("/raw", raw)], middleware=[Middleware(middleware, "example")])
    client = TestClient(app, raise_server_exceptions=True)
    assert client.get("/raw").json() == {"session": {"some": "data"}}


# -- what only ours does --------------------------------------------------------------------


def test_emptying_a_session_ends_it_and_refilling_it_keeps_it() -> None:
    async def pop_user(request: Request) -> JSONResponse:
        request.session.pop("user")  # the last key: the session is empty, so it ends
        return JSONResponse({"session": dict(request.session)})

    async def clear_and_refill(request: Request) -> JSONResponse:
        request.session.clear()
        request.session["flash"] = "logged out"  # not empty: the session goes on
        return JSONResponse({"id": request.session.id})

    app = Starlette(
        routes=[*ROUTES, Route("/pop", pop_user), Route("/refill", clear_and_refill)],
        middleware=[Middleware(OURS)],
    )
    client = TestClient(app)
    client.post("/update_session", json={"user": "alice"})
    before = client.cookies["session"]
    assert only_set_cookie(client.get("/pop"))[2]["max-age"] == "0"
    gone = TestClient(app).get("/view_session", headers=cookie(before))
    assert gone.json() == {"session": {}}

    client.post("/update_session", json={"user": "bob"})
    kept = client.get("/refill").json()["id"]
    assert client.cookies["session"] == kept
    assert client.get("/view_session").json() == {"session": {"flash": "logged out"}}


def test_starlette_arguments_are_defaults_below_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``sessionshare up --app`` sets the store and may set the cookie name (its balancer
    routes on it) through the environment; keywords of ours still win over both."""
    monkeypatch.setenv("SESSIONSHARE_COOKIE_NAME", "cluster_session")
    monkeypatch.setenv("SESSIONSHARE_MAX_INACTIVE", "10m")
    monkeypatch.setenv("SESSIONSHARE_KEY_PREFIX", "from_env")
    middleware = OURS(Starlette(), "s3cret", session_cookie="mine", max_age=100, key_prefix="kw")
    config = middleware.config
    assert config.cookie_name == "cluster_session"  # env over Starlette's argument
    assert config.max_inactive == 600.0 and config.cookie_persistent  # Max-Age follows it
    assert config.key_prefix == "kw"  # our keyword over env
    assert config.secret == "s3cret"
    monkeypatch.delenv("SESSIONSHARE_COOKIE_NAME")
    assert OURS(Starlette(), session_cookie="mine").config.cookie_name == "mine"
    assert OURS(Starlette(), cookie_name="kw_name").config.cookie_name == "kw_name"
    whole = SessionConfig(cookie_name="from_config")
    assert OURS(Starlette(), session_cookie="ignored", config=whole).config is whole


def test_starlette_options_mapping() -> None:
    assert starlette_options() == {
        "cookie_name": "session",
        "cookie_path": "/",
        "cookie_samesite": "Lax",
        "cookie_secure": None,  # auto: Secure over https
        "cookie_httponly": True,
        "cookie_partitioned": False,
        "cookie_persistent": True,
        "max_inactive": FOURTEEN_DAYS,
    }
    assert starlette_options(same_site="STRICT")["cookie_samesite"] == "Strict"
    none = starlette_options(same_site="none", max_age=None)
    assert none["cookie_secure"] is None  # Secure over https: browsers drop it without
    assert not none["cookie_persistent"] and "max_inactive" not in none
    assert starlette_options(secret_key=Secret("k"), domain="a.example")["secret"] == "k"
    with pytest.raises(ConfigError, match="same_site"):
        starlette_options(same_site="sometimes")


def test_same_site_none_without_https_only_is_secure_over_https_only() -> None:
    app = starlette_app(OURS, same_site="none")
    cookie = only_set_cookie(
        TestClient(app, base_url="https://testserver").post("/update_session", json={"a": 1})
    )
    assert "secure" in cookie[2]
    plain = only_set_cookie(TestClient(app).post("/update_session", json={"a": 1}))
    assert "secure" not in plain[2]


def test_get_session_dependency_and_its_errors() -> None:
    def build(middleware: type | None) -> FastAPI:
        app = FastAPI()

        @app.post("/login")
        async def login(session: Annotated[Session, Depends(get_session)]) -> dict[str, Any]:
            session.regenerate()
            session["user"] = "alice"
            return {"id": session.id}

        if middleware is not None:
            app.add_middleware(middleware, secret_key="example")
        return app

    client = TestClient(build(OURS))
    sid = client.post("/login").json()["id"]
    assert client.cookies["session"] == sid
    with pytest.raises(RuntimeError, match=r"no session: add the middleware"):
        TestClient(build(None)).post("/login")
    with pytest.raises(RuntimeError, match=r"starlette\.middleware\.sessions\.Session"):
        TestClient(build(STARLETTE)).post("/login")


def test_importing_the_integration_does_not_import_fastapi() -> None:
    code = "import sys, sessionshare.starlette; assert 'fastapi' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_starlette_the_import_names_the_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['starlette'] = None\n"  # as if it were not installed
        "try:\n    import sessionshare.starlette\n"
        "except ImportError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.startswith("MissingExtra sessionshare.starlette needs starlette")
    assert "pip install 'sessionshare[starlette]'" in result.stdout


class RecordingStore(BlockingStoreAdapter):
    """A real memory store that remembers being closed."""

    def __init__(self) -> None:
        super().__init__(MemoryStore())
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1
        await super().aclose()


def test_lifespan_shutdown_closes_the_store() -> None:
    store = RecordingStore()
    app = starlette_app(OURS, "example", store=store)
    with TestClient(app) as client:
        client.post("/update_session", json={"a": 1})
        assert client.get("/view_session").json() == {"session": {"a": 1}}
        assert store.closed == 0
    assert store.closed == 1


def test_example_websocket_reads_the_session_and_survives_a_forged_cookie() -> None:
    from examples.fastapi_app import app

    with TestClient(app) as client:
        client.post("/login", json={"username": "alice", "password": "wonderland"})
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_json() == {"user": "alice"}
        forged = cookie("f" * 32 + ".node9")
        with TestClient(app).websocket_connect("/ws", headers=forged) as websocket:
            assert websocket.receive_json() == {"user": None}
        assert client.get("/me").json()["user"] == "alice"  # the socket changed nothing


def test_memcached_down_answers_503_with_retry_after(memcached_factory: MemcachedFactory) -> None:
    memcached = memcached_factory(1)[0]
    app = starlette_app(
        OURS, "example", store="memcached", nodes=memcached.address, operation_timeout="300ms"
    )
    with TestClient(app) as client:
        client.post("/update_session", json={"user": "alice"})
        assert client.get("/view_session").json() == {"session": {"user": "alice"}}
        memcached.kill()
        for attempt in ("/view_session", "/view_session"):
            started = time.monotonic()
            response = client.get(attempt)
            assert time.monotonic() - started < 10  # bounded, not a speed target
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
        fresh = TestClient(app).post("/update_session", json={"a": 1})  # a new session's write
        assert fresh.status_code == 503 and fresh.headers["retry-after"] == "1"
        assert fresh.headers.get_list("set-cookie") == []


# -- the FastAPI example on two real uvicorn processes, one real memcached ------------------


def session_cookie(response: httpx.Response) -> str:
    name, value, _ = only_set_cookie(response)
    assert name == "session"
    return value


@pytest.fixture
def two_nodes(
    memcached_factory: MemcachedFactory, process_factory: ProcessFactory
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    memcached = memcached_factory(1)[0]
    nodes: list[ManagedProcess] = []
    for name in ("node1", "node2"):
        env = {
            **os.environ,
            "SESSIONSHARE_STORE": "memcached",
            "SESSIONSHARE_NODES": f"m1:{memcached.address}",
            "SESSIONSHARE_NODE_NAME": name,
        }
        argv = [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--host",
                "127.0.0.1", "--port", "{port}", "--log-level", "warning"]  # fmt: skip
        nodes.append(process_factory(argv, name=name, env=env, cwd=REPO, ready_path="/healthz"))
    clients = [httpx.Client(base_url=node.url, timeout=10) for node in nodes]
    try:
        yield clients[0], clients[1]
    finally:
        for client in clients:
            client.close()


def test_example_cluster_login_cart_logout(two_nodes: tuple[httpx.Client, httpx.Client]) -> None:
    node1, node2 = two_nodes

    def me(node: httpx.Client, sid: str) -> dict[str, Any]:
        response = node.get("/me", headers=cookie(sid))
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]

    anonymous = session_cookie(node1.post("/cart", json={"item": "apple"}))
    bad = node1.post("/login", json={"username": "alice", "password": "nope"},
                     headers=cookie(anonymous))  # fmt: skip
    assert bad.status_code == 401 and bad.json() == {"error": "bad credentials"}
    login = node1.post("/login", json={"username": "alice", "password": "wonderland"},
                       headers=cookie(anonymous))  # fmt: skip
    assert login.json() == {"user": "alice"}
    sid = session_cookie(login)
    assert parse_session_id(sid).token != parse_session_id(anonymous).token  # type: ignore[union-attr]
    assert me(node2, anonymous)["user"] is None  # the pre-login id is dead on every node

    assert me(node2, sid) == {"user": "alice", "cart": ["apple"], "node": "node2"}
    cart = node2.post("/cart", json={"item": "pear"}, headers=cookie(sid))
    assert cart.json() == {"cart": ["apple", "pear"]}
    assert me(node1, sid) == {"user": "alice", "cart": ["apple", "pear"], "node": "node1"}

    logout = node2.post("/logout", headers=cookie(sid))
    assert logout.json() == {"user": None}
    assert only_set_cookie(logout)[2]["max-age"] == "0"
    assert me(node1, sid) == {"user": None, "cart": [], "node": "node1"}


def test_example_cluster_logout_is_not_undone_by_a_racing_cart_update(
    two_nodes: tuple[httpx.Client, httpx.Client],
) -> None:
    node1, node2 = two_nodes
    login = node1.post("/login", json={"username": "bob", "password": "builder"})
    sid = session_cookie(login)
    slow = threading.Thread(
        target=node1.post,
        args=("/cart",),
        kwargs={"json": {"item": "late", "delay": 1.0}, "headers": cookie(sid)},
    )
    slow.start()
    time.sleep(0.3)  # the cart update has loaded the session and sleeps
    assert node2.post("/logout", headers=cookie(sid)).json() == {"user": None}
    slow.join(timeout=15)
    assert not slow.is_alive()
    for node in (node1, node2):
        assert node.get("/me", headers=cookie(sid)).json()["user"] is None


def test_cookie_regex_from_starlettes_docs_finds_our_max_age() -> None:
    """Starlette's tests find Max-Age with ``; Max-Age=([0-9]+);``: so can a user's."""
    client = TestClient(starlette_app(OURS, "example"))
    header = client.post("/update_session", json={"a": 1}).headers["set-cookie"]
    match = re.search(r"; Max-Age=([0-9]+);", header)
    assert match is not None and int(match[1]) == FOURTEEN_DAYS
