"""HTTP/1.1 through the balancer: framing, forwarding headers, limits and error statuses.

Raw sockets where the wire format is the point (chunked, 100-continue, oversized heads);
httpx elsewhere. Every test runs with the embedded balancer and with nginx.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.balancer.conftest import BalancerFactory, ClosedNode
from tests.servers import ManagedProcess


def raw_exchange(process: ManagedProcess, payload: bytes, timeout: float = 10) -> bytes:
    """Send ``payload`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(process.addr, timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def dechunk(body: bytes) -> bytes:
    out = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[:size])
        body = body[size + 2 :]


@pytest.fixture
def two_nodes(
    upstreams: dict[str, ManagedProcess], balancer_factory: BalancerFactory
) -> ManagedProcess:
    return balancer_factory([upstreams["n1"], upstreams["n2"]])


def test_forwarding_headers_added_and_host_kept(two_nodes: ManagedProcess) -> None:
    response = httpx.get(
        f"{two_nodes.url}/headers",
        headers={"Host": "app.example:8080", "X-Forwarded-For": "203.0.113.9",
                 "Proxy-Connection": "keep-alive"},
        timeout=10,
    )  # fmt: skip
    headers = dict(response.json()["headers"])
    assert headers["host"] == "app.example:8080"
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert "proxy-connection" not in headers


def test_keep_alive_to_the_client(two_nodes: ManagedProcess) -> None:
    with socket.create_connection(two_nodes.addr, timeout=10) as sock:
        answers = []
        for _ in range(3):
            sock.sendall(b"GET /name HTTP/1.1\r\nHost: t\r\n\r\n")
            data = b""
            while not data.endswith((b"n1", b"n2")):
                data += sock.recv(65536)
            answers.append(data)
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
    assert {a[-2:] for a in answers} == {b"n1", b"n2"}  # one connection, both nodes


def test_chunked_request_body_reaches_the_node_whole(two_nodes: ManagedProcess) -> None:
    parts = [b"a" * 1000, b"b" * 70_000, b"c" * 5]
    body = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    raw = raw_exchange(
        two_nodes,
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + body,
    )
    status, headers, payload = split_response(raw)
    if headers.get("transfer-encoding") == "chunked":
        payload = dechunk(payload)
    answer = json.loads(payload)
    assert status == 200
    assert answer["bytes"] == 71_005
    assert answer["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


def test_chunked_response_is_relayed_chunked(two_nodes: ManagedProcess) -> None:
    raw = raw_exchange(
        two_nodes, b"GET /bytes?n=300000&chunked=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    status, headers, body = split_response(raw)
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers
    assert dechunk(body) == b"x" * 300_000


def test_expect_100_continue(two_nodes: ManagedProcess) -> None:
    with socket.create_connection(two_nodes.addr, timeout=10) as sock:
        sock.sendall(
            b"PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        data = interim.split(b"\r\n\r\n", 1)[1]
        while chunk := sock.recv(65536):
            data += chunk
    status, _, body = split_response(data)
    assert status == 200
    assert json.loads(body)["bytes"] == 5


def test_413_for_a_body_over_the_limit(
    upstreams: dict[str, ManagedProcess], balancer_factory: BalancerFactory
) -> None:
    balancer = balancer_factory([upstreams["n1"]], "--max-body", "1m")
    big = httpx.post(f"{balancer.url}/upload", content=b"x" * (1024 * 1024 + 1), timeout=10)
    assert big.status_code == 413
    fine = httpx.post(f"{balancer.url}/upload", content=b"x" * 1024 * 1024, timeout=10)
    assert fine.json()["bytes"] == 1024 * 1024
    # Announced too large with Expect: refused before the client sends the body.
    with socket.create_connection(balancer.addr, timeout=10) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")


def test_413_for_a_chunked_body_that_grows_over_the_limit(
    upstreams: dict[str, ManagedProcess], balancer_factory: BalancerFactory
) -> None:
    balancer = balancer_factory([upstreams["n1"]], "--max-body", "1m")

    def chunks() -> Iterator[bytes]:  # a generator body makes httpx send chunked
        for _ in range(40):
            yield b"y" * 65536

    try:
        response = httpx.post(f"{balancer.url}/upload", content=chunks(), timeout=10)
    except httpx.TransportError:
        pytest.fail("the balancer cut the connection instead of answering 413")
    assert response.status_code == 413


def test_431_for_a_request_head_over_32_kib(two_nodes: ManagedProcess) -> None:
    raw = raw_exchange(
        two_nodes, b"GET /name HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 431")
    ok = httpx.get(f"{two_nodes.url}/name", headers={"X-Big": "a" * 20_000}, timeout=10)
    assert ok.status_code == 200


def test_504_when_the_node_does_not_answer_in_time(
    upstreams: dict[str, ManagedProcess], balancer_factory: BalancerFactory
) -> None:
    balancer = balancer_factory([upstreams["n3"]], "--timeout", "0.5")
    started = time.monotonic()
    response = httpx.get(f"{balancer.url}/sleep?s=3", timeout=10)
    assert response.status_code == 504
    assert time.monotonic() - started < 2.5


def test_503_with_a_short_page_when_no_node_is_up(balancer_factory: BalancerFactory) -> None:
    balancer = balancer_factory([ClosedNode("d1"), ClosedNode("d2")])  # type: ignore[list-item]
    for _ in range(2):  # first: connect errors; second: both nodes marked failed
        response = httpx.get(f"{balancer.url}/name", timeout=10)
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/html")
        assert "503" in response.text
        assert len(response.content) < 1024


def test_pipelined_head_and_get_on_one_connection(two_nodes: ManagedProcess) -> None:
    raw = raw_exchange(
        two_nodes,
        b"HEAD /bytes?n=1000 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /bytes?n=3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    assert b"content-length: 1000" in first.lower()  # announced, never sent for HEAD
    status, headers, body = split_response(rest)
    assert (status, headers["content-length"], body) == (200, "3", b"xxx")


def test_http_1_0_client_gets_a_close_delimited_body(two_nodes: ManagedProcess) -> None:
    raw = raw_exchange(two_nodes, b"GET /bytes?n=5000&chunked=1 HTTP/1.0\r\n\r\n")
    status, headers, body = split_response(raw)
    assert status == 200
    assert "transfer-encoding" not in headers
    assert body == b"x" * 5000
