"""A small blocking HTTP client with one session cookie, and bounded load loops.

``http.client`` rather than httpx: fifty of these in threads cost little CPU on two
shared cores, so the servers, not the client, are what the tests measure. The client
never retries: whatever a user's browser would see as an error, a test sees too.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sessionshare.core.ids import parse_session_id
from tests.servers import ManagedProcess

COOKIE_RE = re.compile(r"SESSIONID=([^;]*)")
#: a kept-alive connection idle this long is dropped before the next request, as browsers
#: prune theirs: uvicorn closes idle connections after 5 s, and a request sent on a
#: connection the server is closing fails without being an error of the server.
IDLE_LIMIT = 4.0


@dataclass
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def count(self) -> int:
        return int(self.body["count"])

    @property
    def token(self) -> str:
        sid = parse_session_id(self.body["session_id"])
        assert sid is not None, self.body
        return sid.token


@dataclass
class Browser:
    """One user: a cookie jar and a keep-alive connection per server."""

    cookie: str | None = None
    _conns: dict[tuple[str, int], http.client.HTTPConnection] = field(default_factory=dict)
    _used: dict[tuple[str, int], float] = field(default_factory=dict)

    def request(
        self, server: ManagedProcess, method: str, path: str, body: Any = None, timeout: float = 10
    ) -> Reply:
        headers = {"Cookie": f"SESSIONID={self.cookie}"} if self.cookie else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        # No redial: a drill counts every transport error, truncated or lost response as a
        # failure. (A silent retry here once hid a balancer that dropped in-flight GETs.)
        conn = self._conns.get(server.addr)
        now = time.monotonic()
        if conn is not None and now - self._used.get(server.addr, now) > IDLE_LIMIT:
            conn.close()  # idle past the server's keep-alive timeout: it may be closing it
            conn = None
        self._used[server.addr] = now
        if conn is None:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
            self._conns[server.addr] = conn
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            del self._conns[server.addr]  # the next request dials afresh; this one failed
            raise
        if response.will_close:
            conn.close()
            del self._conns[server.addr]
        for value in response.headers.get_all("Set-Cookie") or ():
            match = COOKIE_RE.search(value)
            if match:
                self.cookie = match.group(1) or None
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"raw": raw.decode(errors="replace")}
        return Reply(response.status, parsed)

    def get(self, server: ManagedProcess, path: str = "/api/session") -> Reply:
        return self.request(server, "GET", path)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()


def retry_ok(action: Callable[[], Reply], *, seconds: float = 10.0) -> Reply:
    """Repeat ``action`` until it answers 200 (a 503 + Retry-After is an invitation to)."""
    deadline = time.monotonic() + seconds
    while True:
        reply = action()
        if reply.status == 200 or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def run_clients(
    clients: int,
    requests: int,
    step: Callable[[int, int, Browser], Reply],
    *,
    seconds: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
) -> list[list[Reply | BaseException]]:
    """``clients`` threads, each doing ``requests`` sequential ``step(client, i, browser)``.

    Bounded twice: in requests, and in time (a stuck loop stops at ``seconds``).
    Exceptions are recorded in place of replies, so a test can assert on all of them.
    """
    deadline = time.monotonic() + seconds
    results: list[list[Reply | BaseException]] = [[] for _ in range(clients)]
    done = [0]
    lock = threading.Lock()

    def work(index: int) -> None:
        browser = Browser()
        try:
            for i in range(requests):
                if time.monotonic() > deadline:
                    results[index].append(TimeoutError("load loop ran out of time"))
                    return
                try:
                    results[index].append(step(index, i, browser))
                except Exception as exc:
                    results[index].append(exc)
                with lock:
                    done[0] += 1
                    total = done[0]
                if on_progress is not None:
                    on_progress(total)
        finally:
            browser.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic() + 5))
    stuck = [i for i, thread in enumerate(threads) if thread.is_alive()]
    assert not stuck, f"clients {stuck} still running past the deadline"
    for index, replies in enumerate(results):  # each did all its requests, or says why not
        assert len(replies) == requests or isinstance(replies[-1], BaseException), (
            f"client {index} stopped after {len(replies)} of {requests} requests"
        )
    return results


def assert_counts_follow(
    results: Sequence[Sequence[Reply | BaseException]], *, may_skip: int = 0
) -> None:
    """Every client's count is previous + 1 (or + 1 + ``may_skip`` after a retried request),
    never back, and its session token never changes."""
    for index, replies in enumerate(results):
        errors = [r for r in replies if not isinstance(r, Reply) or r.status != 200]
        assert not errors, f"client {index}: {errors[:3]}"
        good = [r for r in replies if isinstance(r, Reply)]
        assert good[0].count == 1, f"client {index} started at {good[0].count}"
        tokens = {r.token for r in good}
        assert len(tokens) == 1, f"client {index}: session changed: {tokens}"
        for before, after in itertools.pairwise(good):
            step = after.count - before.count
            assert 1 <= step <= 1 + may_skip, (
                f"client {index}: count went {before.count} -> {after.count}"
            )
