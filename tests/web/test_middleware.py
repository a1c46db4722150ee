"""Session behaviour through real servers: Starlette on uvicorn, Flask on gunicorn.

Each test runs twice (see the ``app_server`` fixture), so the WSGI and the ASGI
drivers are held to exactly the same behaviour.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from sessionshare.core.ids import parse_session_id
from tests.threads import in_background, run_in_threads
from tests.web.conftest import AppServer, client

ID_COOKIE = re.compile(r"SESSIONID=([^;]*)")


def set_cookie(response: httpx.Response) -> str | None:
    values = response.headers.get_list("set-cookie")
    return values[0] if values else None


def test_session_survives_requests_with_strict_cookie_flags(app_server: AppServer) -> None:
    with client(app_server()) as http:
        first = http.post("/set", json={"user": "ann", "count": 1})
        cookie = set_cookie(first)
        assert cookie is not None
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http
        sid = first.json()["id"]
        assert parse_session_id(sid) is not None
        second = http.get("/get")
        assert second.json() == {"id": sid, "is_new": False, "data": {"user": "ann", "count": 1}}
        assert set_cookie(second) is None  # unchanged id: no cookie re-sent


def test_secure_flag_follows_https_from_a_trusted_proxy(app_server: AppServer) -> None:
    with client(app_server()) as http:
        response = http.post("/set", json={"a": 1}, headers={"X-Forwarded-Proto": "https"})
        cookie = set_cookie(response)
        assert cookie is not None and "; Secure" in cookie


def test_nested_mutation_is_saved(app_server: AppServer) -> None:
    with client(app_server()) as http:
        http.post("/set", json={"cart": ["apple"]})
        http.post("/append", params={"key": "cart", "value": "pear"})
        assert http.get("/get").json()["data"]["cart"] == ["apple", "pear"]


def test_unmodified_session_is_not_rewritten(app_server: AppServer) -> None:
    with client(app_server()) as http:
        http.post("/set", json={"a": 1})
        writes = http.get("/stats").json()["writes"]
        for _ in range(3):
            http.get("/get")
        assert http.get("/stats").json()["writes"] == writes
        http.post("/set", json={"a": 2})
        assert http.get("/stats").json()["writes"] == writes + 1


def test_ignored_paths_get_no_session_and_no_cookie(app_server: AppServer) -> None:
    with client(app_server()) as http:
        http.post("/set", json={"a": 1})
        loaded = http.get("/stats").json()["loaded"]
        response = http.get("/static/app.css")
        assert set_cookie(response) is None
        assert response.json()["is_new"] is True  # not even loaded
        assert http.get("/stats").json()["loaded"] == loaded + 1  # the /stats request only
        assert "touched_by_static" not in http.get("/get").json()["data"]


def test_regenerate_keeps_data_under_a_new_token(app_server: AppServer) -> None:
    server = app_server()
    with client(server) as http:
        old = http.post("/set", json={"user": "ann"}).json()["id"]
        new = http.post("/regenerate").json()["id"]
        assert parse_session_id(new).token != parse_session_id(old).token  # type: ignore[union-attr]
        assert http.get("/get").json() == {"id": new, "is_new": False, "data": {"user": "ann"}}
    with client(server) as attacker:  # the pre-login id is dead
        stale = attacker.get("/get", headers={"Cookie": f"SESSIONID={old}"}).json()
        assert stale["is_new"] is True and stale["data"] == {}


def test_invalidate_expires_the_cookie_and_the_data(app_server: AppServer) -> None:
    server = app_server()
    with client(server) as http:
        sid = http.post("/set", json={"user": "ann"}).json()["id"]
        response = http.post("/invalidate")
        cookie = set_cookie(response)
        assert cookie is not None and "Max-Age=0" in cookie
    with client(server) as again:
        replay = again.get("/get", headers={"Cookie": f"SESSIONID={sid}"}).json()
        assert replay["is_new"] is True and replay["id"] != sid


def test_idle_session_expires(app_server: AppServer) -> None:
    with client(app_server(max_inactive="1s")) as http:
        sid = http.post("/set", json={"a": 1}).json()["id"]
        time.sleep(0.6)
        assert http.get("/get").json()["id"] == sid  # the read refreshed the TTL
        time.sleep(0.6)
        assert http.get("/get").json()["id"] == sid
        time.sleep(1.5)
        fresh = http.get("/get").json()
        assert fresh["is_new"] is True and fresh["id"] != sid


def test_oversized_session_gets_a_clear_error_and_keeps_the_old_one(app_server: AppServer) -> None:
    with client(app_server(max_session_bytes="2000")) as http:
        http.post("/set", json={"a": 1})
        response = http.post("/big", params={"size": "5000"})
        assert response.status_code == 500
        assert "max_session_bytes=2000" in response.text
        assert http.get("/get").json()["data"] == {"a": 1}


def test_malformed_cookies_start_fresh_sessions(app_server: AppServer) -> None:
    with client(app_server()) as http:
        for value in ["garbage", "0" * 32 + "-unknownnode", "x" * 4000, '"', "0" * 31 + "é"]:
            header = f"SESSIONID={value}".encode()  # bytes: httpx refuses non-ASCII str
            response = http.post("/incr", headers={"Cookie": header})
            assert response.status_code == 200
            body = response.json()
            assert body["data"] == {"count": 1} and body["id"] != value
            assert set_cookie(response) is not None


def test_lock_timeout_answers_503_with_retry_after(app_server: AppServer) -> None:
    server = app_server(locking="all", lock_timeout="300ms")
    with client(server) as http:
        http.post("/set", json={"count": 1})
        cookie = {"Cookie": f"SESSIONID={http.cookies['SESSIONID']}"}
        url = f"{server.url}/incr?sleep=1.5"
        with in_background(lambda: httpx.post(url, headers=cookie, timeout=10), timeout=30) as h:
            time.sleep(0.4)  # the holder has the lock now
            blocked = httpx.post(f"{server.url}/incr", headers=cookie, timeout=10)
        assert h.join(0).status_code == 200
        assert blocked.status_code == 503
        assert blocked.headers["retry-after"] == "1"
        assert http.get("/get").json()["data"]["count"] == 2  # only the holder's increment


def test_a_lock_held_longer_than_its_ttl_is_renewed(app_server: AppServer) -> None:
    """lock_timeout 4s: locks live 2 s and are renewed while their request runs. A
    request that holds one for 3 s keeps it: the next waits for it and sees its change
    (without renewal it would take the lock at 2 s and both would read count 1)."""
    server = app_server(locking="all", lock_timeout="4s")
    with client(server) as http:
        http.post("/set", json={"count": 1})
        cookie = {"Cookie": f"SESSIONID={http.cookies['SESSIONID']}"}
        held: dict[str, float] = {}

        def hold() -> None:
            response = httpx.post(f"{server.url}/incr?sleep=3", headers=cookie, timeout=10)
            assert response.status_code == 200
            held["until"] = time.monotonic()

        with in_background(hold, timeout=30):
            time.sleep(0.4)  # the holder has the lock now
            waiter = httpx.post(f"{server.url}/incr", headers=cookie, timeout=10)
            done = time.monotonic()
        assert waiter.status_code == 200
        assert waiter.json()["data"]["count"] == 3  # after the holder's increment
        assert done >= held["until"] - 0.05
        assert http.get("/get").json()["data"]["count"] == 3


def test_parallel_increments_with_locking_lose_nothing(app_server: AppServer) -> None:
    server = app_server(locking="all")
    with client(server) as http:
        http.post("/set", json={"count": 0})
        cookie = {"Cookie": f"SESSIONID={http.cookies['SESSIONID']}"}

        def worker() -> None:
            with httpx.Client(base_url=server.url, headers=cookie, timeout=10) as mine:
                for _ in range(25):
                    assert mine.post("/incr").status_code == 200

        run_in_threads([worker] * 4, timeout=60)
        assert http.get("/get").json()["data"]["count"] == 100


@pytest.mark.parametrize("serializer", ["json", "msgpack", "pickle"])
def test_every_serializer_round_trips_through_the_server(
    app_server: AppServer, serializer: str
) -> None:
    data = {"user": {"name": "Zoë", "roles": ["a", "b"]}, "n": 1.5, "none": None, "ok": True}
    with client(app_server(serializer=serializer, secret="s3cret")) as http:
        http.post("/set", json=data)
        assert http.get("/get").json()["data"] == data
