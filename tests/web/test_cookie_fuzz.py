"""Properties of the ``Cookie`` header, in both directions.

Hypothesis sends 10 000+ random ``Cookie`` headers through each middleware (called
in-process, so the run is fast enough for every CI run). Every response must be a
200 that carries either the right session (the client sent the valid id) or a
fresh one: never an exception, a 5xx, or somebody else's data. And the other way
round: a header whose session cookie is the valid id, among any other cookies, must
resume that session (a middleware that ignored every cookie would pass the first
property alone, since a fresh session is always an allowed answer).
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionshare.web import asgi, wsgi
from tests.web.apps import act

EXAMPLES = 5_000  # per strategy, per middleware: 2 strategies x 5 000 = 10 000 each


def wsgi_middleware() -> wsgi.SessionMiddleware:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        _, payload = act("/incr", wsgi.get_session(environ), {}, None, middleware.manager)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{payload['id']} {payload['data']['count']}".encode()]

    middleware = wsgi.SessionMiddleware(app)
    return middleware


def asgi_middleware() -> asgi.SessionMiddleware:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        _, payload = act("/incr", scope["session"], {}, None, middleware.manager)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        body = f"{payload['id']} {payload['data']['count']}".encode()
        await send({"type": "http.response.body", "body": body})

    middleware = asgi.SessionMiddleware(app)
    return middleware


def call_wsgi(middleware: wsgi.SessionMiddleware, cookie: bytes) -> tuple[int, str]:
    result: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        result["status"] = int(status.split()[0])

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/incr",
        "wsgi.url_scheme": "http",
        "HTTP_COOKIE": cookie.decode("latin-1"),
    }
    body = middleware(environ, start_response)
    text = b"".join(body).decode()
    body.close()  # type: ignore[attr-defined]
    return result["status"], text


def call_asgi(
    middleware: asgi.SessionMiddleware, loop: asyncio.AbstractEventLoop, cookie: bytes
) -> tuple[int, str]:
    messages: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/incr",
        "scheme": "http",
        "headers": [(b"cookie", cookie)],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    loop.run_until_complete(middleware(scope, receive, send))
    return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:]).decode()


class Client:
    """One middleware with one known-good session, and a way to call it."""

    def __init__(self, kind: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.middleware: Any = wsgi_middleware() if kind == "wsgi" else asgi_middleware()
        self.kind = kind
        _, text = self.call(b"")
        self.good_id, count = text.split()
        self.count = int(count)

    def call(self, cookie: bytes) -> tuple[int, str]:
        if self.kind == "wsgi":
            return call_wsgi(self.middleware, cookie)
        return call_asgi(self.middleware, self.loop, cookie)

    def check(self, cookie: bytes, *, sends_good_id: bool, must_resume: bool = False) -> None:
        status, text = self.call(cookie)
        assert status == 200, text
        session_id, count = text.split()
        if must_resume:
            assert session_id == self.good_id, f"valid cookie not resumed: {cookie!r}"
        if session_id == self.good_id:  # only the holder of the valid id gets its session
            assert sends_good_id
            self.count += 1
            assert int(count) == self.count
        else:
            assert int(count) == 1  # a fresh session


CLIENTS = {kind: Client(kind) for kind in ("wsgi", "asgi")}

# Raw header bytes: anything a client could put on the wire (no CR/LF).
raw_headers = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
# Plausible-looking cookies: near-miss ids, suffix forgeries, duplicates, oversized values.
id_like = st.from_regex(r"[0-9a-fA-F]{0,40}([-.][A-Za-z0-9_/%]{0,40}){0,3}", fullmatch=True)
near_misses = st.one_of(
    id_like,
    st.text(alphabet="0123456789abcdef-._", min_size=30, max_size=200),
    st.text(max_size=150),
)

FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _random_header(kind: str, raw: bytes) -> None:
    CLIENTS[kind].check(raw, sends_good_id=CLIENTS[kind].good_id.encode() in raw)


def _forged_cookie(kind: str, value: str, with_good: bool, position: int) -> None:
    client = CLIENTS[kind]
    parts = [f"SESSIONID={value}", "other=1"]
    if with_good:
        parts.insert(position % 3, f"SESSIONID={client.good_id}")
    header = "; ".join(parts).encode("utf-8", "surrogatepass")
    # The first session cookie wins (a browser sends the most specific path first).
    first = with_good and position % 3 == 0
    client.check(header, sends_good_id=with_good or client.good_id in value, must_resume=first)


# Other cookies a browser may send beside ours: any name but SESSIONID, any safe value.
other_cookies = st.lists(
    st.tuples(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True).filter(
            lambda name: name != "SESSIONID"
        ),
        st.from_regex(r"[A-Za-z0-9!#$%&'()*+\-./:<>?@\[\]^_`{|}~]{0,40}", fullmatch=True),
    ),
    max_size=6,
)


def _valid_cookie(kind: str, others: list[tuple[str, str]], position: int, spaces: bool) -> None:
    client = CLIENTS[kind]
    parts = [f"{name}={value}" for name, value in others]
    parts.insert(position % (len(parts) + 1), f"SESSIONID={client.good_id}")
    header = (";  " if spaces else ";").join(parts).encode()
    client.check(header, sends_good_id=True, must_resume=True)


@FAST
@given(raw=raw_headers)
def test_random_cookie_headers_wsgi(raw: bytes) -> None:
    _random_header("wsgi", raw)


@FAST
@given(raw=raw_headers)
def test_random_cookie_headers_asgi(raw: bytes) -> None:
    _random_header("asgi", raw)


VALID = settings(FAST, max_examples=1_000)


@VALID
@given(others=other_cookies, position=st.integers(0, 6), spaces=st.booleans())
def test_a_valid_cookie_among_others_resumes_its_session_wsgi(
    others: list[tuple[str, str]], position: int, spaces: bool
) -> None:
    _valid_cookie("wsgi", others, position, spaces)


@VALID
@given(others=other_cookies, position=st.integers(0, 6), spaces=st.booleans())
def test_a_valid_cookie_among_others_resumes_its_session_asgi(
    others: list[tuple[str, str]], position: int, spaces: bool
) -> None:
    _valid_cookie("asgi", others, position, spaces)


@FAST
@given(value=near_misses, with_good=st.booleans(), position=st.integers(0, 2))
def test_forged_session_cookies_wsgi(value: str, with_good: bool, position: int) -> None:
    _forged_cookie("wsgi", value, with_good, position)


@FAST
@given(value=near_misses, with_good=st.booleans(), position=st.integers(0, 2))
def test_forged_session_cookies_asgi(value: str, with_good: bool, position: int) -> None:
    _forged_cookie("asgi", value, with_good, position)
