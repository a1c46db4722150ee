"""The embedded balancer: an asyncio HTTP/1.1 reverse proxy (SPEC §5).

One coroutine per client connection reads requests in order (keep-alive, pipelining),
picks a node through the policy, sends the request on a pooled keep-alive connection and
streams the response back. Bodies are never held whole unless small (≤ 64 KiB, so they
can be replayed on another node): a 100 MiB upload or download flows through a few hundred
KiB of buffers (``channel.py``), with back-pressure both ways.

Retries follow nginx's ``proxy_next_upstream error timeout invalid_header http_502``: only
before a byte of the response reached the client, only for idempotent methods (POST with
``retry_post``), and never for a request body that was already streamed away; a refused
connection, which saw nothing of the request, moves any request on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from http import HTTPStatus
from typing import Any

import httptools

from sessionshare.balancer.channel import Channel, HeadTooLarge
from sessionshare.balancer.config import BalancerConfig
from sessionshare.balancer.health import HealthChecker
from sessionshare.balancer.http import (
    END,
    HOP_BY_HOP,
    End,
    Head,
    chunk,
    error_response,
)
from sessionshare.balancer.policies import RequestInfo, make_policy
from sessionshare.balancer.status import (
    LocalHandler,
    LocalRequest,
    LocalResponse,
    StatusHook,
    build_status,
    json_response,
)
from sessionshare.balancer.upstream import Node

__all__ = ["Balancer"]

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
#: Request bodies up to this size are read before a node is chosen, so a retry can resend
#: them (nginx buffers bodies for the same reason, in memory up to 8-16 KiB then on disk).
REPLAY_LIMIT = 64 * 1024
#: Response bytes held back before the first write to the client (see _relay_response).
RELAY_BUFFER = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
#: Headers the balancer sets itself on the way to a node.
_REPLACED = frozenset({b"x-real-ip", b"x-forwarded-proto", b"x-forwarded-for", b"expect"})
_DROP = HOP_BY_HOP | _REPLACED
_NO_BODY_STATUS = frozenset({204, 304})


class _ClientGone(Exception):
    """The client closed or reset its connection; nothing more can be sent to it."""


class _HttpError(Exception):
    """Answer the client with ``status`` and close its connection."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _NodeError(Exception):
    """A node failed before anything of its response reached the client.

    ``kind``: connect, timeout or broken; ``got_bytes``: whether the node had answered
    anything at all (a reused connection that got nothing was merely stale).
    """

    def __init__(self, kind: str, got_bytes: bool = False) -> None:
        super().__init__(kind)
        self.kind = kind
        self.got_bytes = got_bytes


class _Retry(Exception):
    """The node answered 502 and another node may answer better."""


class Balancer:
    """The embedded load balancer: nodes, policy, health checks and the listening socket.

    Args:
        config: topology and limits (the same object feeds ``nginx-config``).
        status_hook: completes ``/_cluster/status`` with what only the supervisor knows.
    """

    def __init__(self, config: BalancerConfig, *, status_hook: StatusHook | None = None) -> None:
        self.config = config
        self.nodes = [Node(spec, config) for spec in config.nodes]
        if len(self.nodes) == 1:
            # nginx: "If there is only a single server in a group, max_fails [and]
            # fail_timeout ... are ignored": refusing its only node helps nobody.
            self.nodes[0].passive.max_fails = 0
        self.policy = make_policy(config.policy, self.nodes, config.cookie_name)
        self.health = HealthChecker(self.nodes, config.health, self._on_health_change)
        self.status_hook = status_hook
        self._mounts: dict[str, LocalHandler] = {"/_cluster/status": self._status_handler}
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()
        self.requests = 0
        self.connections = 0

    # -- lifecycle -----------------------------------------------------------------
    @property
    def url(self) -> str:
        port = self.port
        return f"http://{self.config.host}:{port}"

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self.config.port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_client, self.config.host, self.config.port, backlog=1024
        )
        self.health.start()
        log.info("balancer on %s, policy %s", self.url, self.config.policy)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self) -> None:
        await self.health.stop()
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        for node in self.nodes:
            node.pool.clear()

    def mount(self, prefix: str, handler: LocalHandler) -> None:
        """Serve ``prefix`` (exact, or everything under it if it ends in ``/``) locally.

        This is the dashboard hook: the cluster mounts its page at ``/_cluster/``.
        """
        self._mounts[prefix] = handler

    def _on_health_change(self, node: Node) -> None:
        if not node.active.up:
            node.pool.clear()

    # -- status --------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        document = build_status(self.url, self.config.policy, self.nodes)
        if self.status_hook is not None:
            document = await self.status_hook(document)
        return document

    async def _status_handler(self, request: LocalRequest) -> LocalResponse:
        return json_response(await self.status())

    def _local_handler(self, path: bytes) -> LocalHandler | None:
        if not path.startswith(b"/_cluster"):
            return None
        text = path.decode("latin-1")
        best: str | None = None
        for prefix in self._mounts:
            hit = text == prefix or (prefix.endswith("/") and text.startswith(prefix))
            if hit and (best is None or len(prefix) > len(best)):
                best = prefix
        return self._mounts[best] if best is not None else None

    # -- one client connection -----------------------------------------------------
    def _new_client(self) -> Channel:
        # The head limit doubles as llhttp's buffer cap: the exact 431 check is on the
        # parsed size (Head.size); this one stops a head that never ends.
        channel = _ClientChannel(response=False, head_limit=2 * self.config.max_header_bytes)
        channel.balancer = self
        return channel

    async def _serve_client(self, channel: Channel) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        self.connections += 1
        try:
            await _ClientConnection(self, channel).run()
        except (_ClientGone, ConnectionError, EOFError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("client connection crashed")
        finally:
            self._clients.discard(task)
            channel.close()

    def pick(self, tried: set[Node], request: RequestInfo) -> Node | None:
        """A node for ``request`` that is available and not yet ``tried``, or ``None``."""
        now = time.monotonic()
        candidates = [n for n in self.nodes if n not in tried and n.available(now)]
        if not candidates:
            return None
        node = self.policy.choose(candidates, request)
        node.passive.selected(now)
        return node

    def __repr__(self) -> str:
        up = sum(1 for n in self.nodes if n.healthy)
        state = "serving" if self._server is not None and self._server.is_serving() else "idle"
        return (
            f"<Balancer {state} {self.url} policy={self.config.policy} "
            f"nodes={up}/{len(self.nodes)} up requests={self.requests} "
            f"clients={len(self._clients)}>"
        )


class _ClientChannel(Channel):
    """The client side: starts the connection's coroutine once the socket is accepted."""

    balancer: Balancer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.loop.create_task(self.balancer._serve_client(self))


class _ClientConnection:
    """Reads requests from one client and proxies them, one at a time, in order."""

    def __init__(self, balancer: Balancer, channel: Channel) -> None:
        self.balancer = balancer
        self.config = balancer.config
        self.client = channel
        self.client_ip = channel.peer_ip()

    # -- reading the client --------------------------------------------------------
    async def _event(self, timeout: float) -> Head | bytes | End:
        try:
            return await self.client.next_event(timeout)
        except EOFError:
            raise _ClientGone from None
        except HeadTooLarge:
            raise _HttpError(431, "Request header fields too large.") from None
        except httptools.HttpParserUpgrade:
            raise _HttpError(501, "Protocol upgrades are not supported.") from None
        except httptools.HttpParserError as exc:
            raise _HttpError(400, f"Malformed request: {exc}") from None

    async def run(self) -> None:
        while True:
            try:
                event = await self._event(self.config.client_keepalive)
            except TimeoutError:
                return  # idle keep-alive connection: close quietly, as nginx does
            except _HttpError as exc:
                await self._send_error(exc)
                return
            assert isinstance(event, Head), event
            try:
                keep = await self._serve(event)
            except _HttpError as exc:
                await self._send_error(exc)
                return
            except TimeoutError:
                return  # the client stalled mid-body
            if not keep:
                return

    async def _send_error(self, exc: _HttpError) -> None:
        with contextlib.suppress(ConnectionError):
            self.client.write(error_response(exc.status, exc.detail))
            await self.client.drain()

    async def _read_body(self) -> bytes:
        parts: list[bytes] = []
        while (event := await self._event(self.config.read_timeout)) is not END:
            assert isinstance(event, bytes)
            parts.append(event)
        return b"".join(parts)

    # -- one request ---------------------------------------------------------------
    async def _serve(self, head: Head) -> bool:
        """Proxy one request; return whether the client connection stays open."""
        config = self.config
        balancer = self.balancer
        balancer.requests += 1
        if head.size > config.max_header_bytes:
            raise _HttpError(431, "Request header fields too large.")
        path = head.target.split(b"?", 1)[0]
        local = balancer._local_handler(path)
        if local is not None:
            return await self._serve_local(head, local)
        if head.content_length is not None and head.content_length > config.max_body_bytes:
            raise _HttpError(413, "Request body too large.")
        cookie = head.header(b"cookie") if balancer.policy.uses_cookie else None
        request = RequestInfo(self.client_ip, cookie.decode("latin-1") if cookie else None)
        if not _any_available(balancer):
            raise _HttpError(503, "No healthy node is available. Try again shortly.")

        has_body = head.chunked or bool(head.content_length)
        if has_body:
            expect = head.header(b"expect")
            if expect is not None and expect.lower() == b"100-continue":
                self.client.write(_CONTINUE)
        body: bytes | None = b""  # None: streamed from the client, cannot be replayed
        if has_body:
            if head.content_length is not None and head.content_length <= REPLAY_LIMIT:
                body = await self._read_body()
            else:
                body = None
        else:
            event = await self._event(config.read_timeout)
            assert event is END, event

        upstream_head = self._upstream_head(head, body)
        retryable = body is not None and (head.method in IDEMPOTENT or config.retry_post)
        tried: set[Node] = set()
        last: _NodeError | None = None
        while True:
            out_of_tries = config.max_tries is not None and len(tried) >= config.max_tries
            node = None if out_of_tries else balancer.pick(tried, request)
            if node is None:
                raise _no_node_error(last)
            tried.add(node)
            try:
                return await self._exchange(node, head, upstream_head, body, retryable)
            except _Retry:
                last = _NodeError("broken")
                continue
            except _NodeError as exc:
                last = exc
                # A refused connection saw nothing of the request (not even a streamed
                # body, read only after connecting): any method may go on, as in nginx.
                if retryable or exc.kind == "connect":
                    continue
                raise _no_node_error(exc) from None

    async def _serve_local(self, head: Head, handler: LocalHandler) -> bool:
        await self._read_body()  # local pages take no body; drain whatever came
        path, _, query = head.target.decode("latin-1").partition("?")
        request = LocalRequest(head.method.decode(), path, query, tuple(head.headers))
        response = await handler(request)
        lines = [
            f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            *(f"{k}: {v}" for k, v in response.headers),
        ]
        if not head.keep_alive:
            lines.append("Connection: close")
        body = b"" if head.method == b"HEAD" else response.body
        self.client.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self._drain_client()
        return head.keep_alive

    def _upstream_head(self, head: Head, body: bytes | None) -> bytes:
        """The request head for a node: hop-by-hop out, forwarding headers in, Host kept."""
        drop = _DROP if head.hop_by_hop is HOP_BY_HOP else head.hop_by_hop | _REPLACED
        out = [b"%s %s HTTP/1.1\r\n" % (head.method, head.target)]
        forwarded_for: bytes | None = None
        has_host = False
        for key, value in head.headers:
            lower = key.lower()
            if lower in drop:
                if lower == b"x-forwarded-for":
                    forwarded_for = value
                continue
            if lower == b"host":
                has_host = True
            out.append(b"%s: %s\r\n" % (key, value))
        ip = self.client_ip.encode()
        if not has_host:  # HTTP/1.0 clients may omit it; HTTP/1.1 nodes require one
            out.append(b"Host: %s\r\n" % self.balancer.url.removeprefix("http://").encode())
        out.append(
            b"X-Forwarded-For: %s\r\nX-Real-IP: %s\r\nX-Forwarded-Proto: http\r\n"
            % ((forwarded_for + b", " + ip) if forwarded_for else ip, ip)
        )
        if body is None and head.chunked:
            out.append(b"Transfer-Encoding: chunked\r\n")
        out.append(b"\r\n")
        return b"".join(out)

    async def _exchange(
        self, node: Node, head: Head, upstream_head: bytes, body: bytes | None, retryable: bool
    ) -> bool:
        """Send the request to ``node`` and stream its response to the client.

        Raises ``_NodeError`` / ``_Retry`` only while nothing has reached the client.
        """
        node.in_flight += 1
        started = time.monotonic()
        try:
            conn = await self._connect(node)
            try:
                response = await self._send_and_read_head(conn, upstream_head, body, head.chunked)
            except _NodeError as exc:
                if not (conn.reused and not exc.got_bytes and exc.kind == "broken" and retryable):
                    raise
                # The node closed this idle connection as we reused it: not a node
                # failure; try once more on a fresh connection (httpcore does too).
                conn = await self._connect(node, fresh=True)
                response = await self._send_and_read_head(conn, upstream_head, body, head.chunked)
            if response.status == 502 and retryable:
                conn.close()
                node.record_failure(time.monotonic())
                raise _Retry
            try:
                keep = await self._relay_response(node, conn, head, response)
            except BaseException:
                conn.abort()  # a half-read response: the connection cannot be reused
                raise
            node.requests += 1
            node.passive.succeeded()
            node.latency.add(time.monotonic() - started)
            return keep
        except _NodeError:
            node.record_failure(time.monotonic())
            raise
        finally:
            node.in_flight -= 1

    async def _connect(self, node: Node, fresh: bool = False) -> Channel:
        if fresh:
            node.pool.clear()
        try:
            return await node.pool.acquire(self.config.connect_timeout)
        except (TimeoutError, OSError):
            raise _NodeError("connect") from None

    async def _send_and_read_head(
        self, conn: Channel, upstream_head: bytes, body: bytes | None, chunked: bool
    ) -> Head:
        ok = False
        try:
            if body is not None:
                conn.write(upstream_head + body)
            else:
                conn.write(upstream_head)
                await self._stream_request_body(conn, chunked)
            await conn.drain(self.config.read_timeout)
            while True:
                event = await conn.next_event(self.config.read_timeout)
                assert isinstance(event, Head), event
                if 100 <= event.status < 200:
                    # Interim responses (we never forward Expect, but a node may still
                    # send one): skip to its end and read on.
                    while await conn.next_event(self.config.read_timeout) is not END:
                        pass
                    continue
                ok = True
                return event
        except TimeoutError:
            raise _NodeError("timeout", conn.received > 0) from None
        except (EOFError, ConnectionError, OSError, httptools.HttpParserError, HeadTooLarge):
            raise _NodeError("broken", conn.received > 0) from None
        finally:
            if not ok:  # whatever went wrong (client gone, 413, node error): never reuse
                conn.abort()

    async def _stream_request_body(self, conn: Channel, chunked: bool) -> None:
        """Copy the client's body to the node as it arrives, enforcing ``max_body_bytes``."""
        limit = self.config.max_body_bytes
        timeout = self.config.read_timeout
        total = 0
        while True:
            try:
                event = await self._event(timeout)
            except TimeoutError:
                raise _ClientGone from None  # the client stalled: not the node's fault
            if event is END:
                break
            assert isinstance(event, bytes)
            total += len(event)
            if total > limit:
                raise _HttpError(413, "Request body too large.")
            conn.write(chunk(event) if chunked else event)
            await conn.drain(timeout)  # a node that stops reading times out as one that is mute
        if chunked:
            conn.write(_LAST_CHUNK)

    async def _relay_response(
        self, node: Node, conn: Channel, request: Head, response: Head
    ) -> bool:
        """Stream the node's response to the client; return whether the client stays."""
        bodyless = request.method == b"HEAD" or response.status in _NO_BODY_STATUS
        client_11 = request.version == "1.1"
        if bodyless or response.content_length is not None:
            reframe = False
            keep_client = request.keep_alive
        elif client_11:
            reframe = True  # chunked, or close-delimited from the node: chunk it
            keep_client = request.keep_alive
        else:
            reframe = False  # an HTTP/1.0 client: the end of the body is our close
            keep_client = False
        drop = response.hop_by_hop
        out = [b"HTTP/1.1 %d %s\r\n" % (response.status, response.target)]
        for key, value in response.headers:
            if key.lower() not in drop:
                out.append(b"%s: %s\r\n" % (key, value))
        if reframe:
            out.append(b"Transfer-Encoding: chunked\r\n")
        if not keep_client:
            out.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            out.append(b"Connection: keep-alive\r\n")
        out.append(b"\r\n")
        client = self.client
        if bodyless:
            # A HEAD answer's Content-Length announces a body that never comes; the parser
            # is per response, so the connection itself is clean and goes back to the pool.
            client.write(b"".join(out))
            conn.expect_response()  # drops a 204/304's END (and a HEAD's body-less parser)
            self._release(node, conn, response)
            await self._drain_client()
            return keep_client

        buffered = out
        size = 0  # body bytes in ``buffered``
        committed = False  # has anything of this response been written to the client?
        timeout = self.config.read_timeout
        while True:
            try:
                event = await conn.next_event(timeout)
            except EOFError:
                if response.content_length is None and not response.chunked:
                    event = END  # a close-delimited body ends with the connection
                else:
                    event = _broken_mid_body(node, committed)
            except (TimeoutError, OSError, httptools.HttpParserError) as exc:
                event = _broken_mid_body(node, committed, exc)
            if event is END:
                if reframe:
                    buffered.append(_LAST_CHUNK)
                client.write(b"".join(buffered))
                self._release(node, conn, response)
                await self._drain_client()
                return keep_client
            assert isinstance(event, bytes)
            buffered.append(chunk(event) if reframe else event)
            size += len(event)
            # Hold the first RELAY_BUFFER bytes (nginx's proxy_buffers do the same): a node
            # that dies between its head and its body has then sent nothing to the client,
            # and the request can still go to another node.
            if (size >= RELAY_BUFFER or committed) and not conn.pending():
                client.write(b"".join(buffered))
                buffered = []
                size = 0
                committed = True
                await self._drain_client()

    def _release(self, node: Node, conn: Channel, response: Head) -> None:
        if response.keep_alive and not conn.pending():
            node.pool.release(conn)
        else:
            conn.close()

    async def _drain_client(self) -> None:
        try:
            await self.client.drain()
        except ConnectionError:
            raise _ClientGone from None


def _broken_mid_body(node: Node, committed: bool, exc: BaseException | None = None) -> End:
    """A node failed while sending its body: retry if the client has nothing yet, else cut."""
    if not committed:
        kind = "timeout" if isinstance(exc, TimeoutError) else "broken"
        raise _NodeError(kind, got_bytes=True)
    # Part of the response is already with the client: all we can do is cut the
    # connection so it sees a truncated message rather than a wrong one.
    node.record_failure(time.monotonic())
    log.warning("node %s failed mid-response: %r", node.name, exc)
    raise _ClientGone


def _any_available(balancer: Balancer) -> bool:
    now = time.monotonic()
    return any(n.available(now) for n in balancer.nodes)


def _no_node_error(last: _NodeError | None) -> _HttpError:
    """The answer after every node was tried: timeouts give 504, connect errors 503."""
    if last is None or last.kind == "connect":
        return _HttpError(503, "No healthy node is available. Try again shortly.")
    if last.kind == "timeout":
        return _HttpError(504, "The node did not answer in time.")
    return _HttpError(502, "The node sent an invalid or incomplete response.")
