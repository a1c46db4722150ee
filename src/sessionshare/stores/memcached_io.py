"""Connections to memcached nodes: one exchange = pipelined commands to several nodes at once.

An *exchange* maps node ids to meta commands. Each node's commands are written in one
``send`` on one connection (memcached answers a connection's commands in order), and all
nodes are written to before any reply is read, so the nodes work in parallel: an exchange
costs one round trip however many nodes it involves. The sync flavour does this with
blocking sockets (no threads needed: send all, then read all); the async flavour with
``asyncio`` streams gathered together. Both share the pure parser in
``memcached_protocol``; only the waiting differs.

Failures are answered per node as ``StoreError`` values (never raised) and reported to
the health view: a refused connection is definite (nothing listens), a timeout only
makes the node suspect until a probe agrees (SPEC §3 ``operation_timeout``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Protocol

from sessionshare.errors import StoreError, StoreTimeout, StoreUnavailable
from sessionshare.process import current_pid
from sessionshare.stores.memcached_protocol import ProtocolError, Reply, ReplyParser
from sessionshare.stores.node_list import NodeSpec

__all__ = ["Answer", "AsyncConnections", "Request", "SyncConnections"]

#: node id -> meta commands for it, in order.
Request = dict[str, list[bytes]]
#: node id -> its replies in order, or the error that stopped the exchange with it.
Answer = dict[str, list[Reply] | StoreError]

#: recv size; a session is usually far smaller, a large one arrives in several reads.
_CHUNK = 65536


class FailureListener(Protocol):
    def __call__(self, node: str, *, definite: bool) -> None: ...


def _translate(node: NodeSpec, exc: BaseException) -> tuple[StoreError, bool]:
    """A library/socket error -> our ``StoreError`` and whether the node is surely down."""
    if isinstance(exc, TimeoutError):
        return StoreTimeout(f"memcached {node.id} ({node.address}): operation timed out"), False
    definite = isinstance(exc, ConnectionRefusedError)
    return StoreUnavailable(f"memcached {node.id} ({node.address}): {exc!r}"), definite


def _stale(exc: BaseException) -> bool:
    """A reused socket the server closed meanwhile (restart, idle timeout): worth one retry."""
    return isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError)


class _SyncConnection:
    __slots__ = ("parser", "sock")

    def __init__(self, spec: NodeSpec, timeout: float) -> None:
        self.sock = socket.create_connection((spec.host, spec.port), timeout=timeout)
        # FIELD-NOTES: without TCP_NODELAY a request after a write stalls ~40 ms.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = ReplyParser()

    def read(self, count: int, deadline: float) -> list[Reply]:
        replies: list[Reply] = []
        while len(replies) < count:
            reply = self.parser.next_reply()
            if reply is not None:
                replies.append(reply)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("memcached reply")
            self.sock.settimeout(remaining)
            data = self.sock.recv(_CHUNK)
            if not data:
                raise ConnectionResetError("memcached closed the connection")
            self.parser.feed(data)
        return replies

    def close(self) -> None:
        self.sock.close()


class _Pools:
    """What both flavours share: the nodes, the timeout, failure reporting, counters."""

    def __init__(
        self, specs: list[NodeSpec], *, timeout: float, on_failure: FailureListener
    ) -> None:
        self.specs = {spec.id: spec for spec in specs}
        self.timeout = timeout
        self.on_failure = on_failure
        #: exchanges (round trips), node messages (one pipelined send to one node per
        #: exchange: an exchange with two nodes is two) and commands, for stats and tests.
        self.exchanges = 0
        self.sends = 0
        self.commands = 0

    def _fail(self, node: str, exc: BaseException) -> StoreError:
        error, definite = _translate(self.specs[node], exc)
        self.on_failure(node, definite=definite)
        return error


class SyncConnections(_Pools):
    """Blocking connection pools, one per node; thread-safe; re-created after a fork."""

    def __init__(
        self, specs: list[NodeSpec], *, timeout: float, on_failure: FailureListener
    ) -> None:
        super().__init__(specs, timeout=timeout, on_failure=on_failure)
        self._idle: dict[str, list[_SyncConnection]] = {node: [] for node in self.specs}
        self._lock = threading.Lock()
        self._pid = current_pid()

    def _acquire(self, node: str) -> tuple[_SyncConnection, bool]:
        """A connection and whether it was reused (a reused one may have gone stale)."""
        with self._lock:
            if self._pid != current_pid():  # forked: the parent's sockets are not ours
                self._idle = {n: [] for n in self.specs}
                self._pid = current_pid()
            idle = self._idle[node]
            if idle:
                return idle.pop(), True
        return _SyncConnection(self.specs[node], self.timeout), False

    def _release(self, node: str, conn: _SyncConnection) -> None:
        with self._lock:
            self._idle[node].append(conn)

    def _send(self, node: str, payload: bytes) -> tuple[_SyncConnection, bool]:
        conn, reused = self._acquire(node)
        try:
            conn.sock.settimeout(self.timeout)
            conn.sock.sendall(payload)
        except OSError:
            conn.close()
            raise
        return conn, reused

    def exchange(self, request: Request) -> Answer:
        """Send every node its commands, then read every node's replies.

        A pooled connection that turns out closed (the server restarted since) is
        replaced once by a fresh one: that is a stale socket, not a node failure.
        """
        self.exchanges += 1
        self.sends += len(request)
        answer: Answer = {}
        sent: list[tuple[str, _SyncConnection, bool]] = []
        for node, commands in request.items():
            self.commands += len(commands)
            try:
                conn, reused = self._send(node, b"".join(commands))
                sent.append((node, conn, reused))
            except OSError as exc:
                answer[node] = self._retry(node, request[node], exc, reused=True)
        deadline = time.monotonic() + self.timeout
        for node, conn, reused in sent:
            try:
                answer[node] = conn.read(len(request[node]), deadline)
            except (OSError, ProtocolError) as exc:
                conn.close()
                answer[node] = self._retry(node, request[node], exc, reused=reused)
            else:
                self._release(node, conn)
        return answer

    def _retry(
        self, node: str, commands: list[bytes], exc: BaseException, *, reused: bool
    ) -> list[Reply] | StoreError:
        if not reused or not _stale(exc):
            return self._fail(node, exc)
        conn = None
        try:
            conn = _SyncConnection(self.specs[node], self.timeout)
            conn.sock.sendall(b"".join(commands))
            replies = conn.read(len(commands), time.monotonic() + self.timeout)
        except (OSError, ProtocolError) as again:
            if conn is not None:
                conn.close()
            return self._fail(node, again)
        self._release(node, conn)
        return replies

    def close(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                for conn in idle:
                    conn.close()
                idle.clear()


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class AsyncConnections(_Pools):
    """asyncio connection pools, one per node, bound to the loop that opened them."""

    def __init__(
        self, specs: list[NodeSpec], *, timeout: float, on_failure: FailureListener
    ) -> None:
        super().__init__(specs, timeout=timeout, on_failure=on_failure)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: dict[str, list[Stream]] = {}

    async def _open(self, node: str) -> Stream:
        spec = self.specs[node]
        async with asyncio.timeout(self.timeout):  # asyncio sets TCP_NODELAY itself
            return await asyncio.open_connection(spec.host, spec.port)

    async def _read(self, stream: Stream, count: int, deadline: float) -> list[Reply]:
        parser = ReplyParser()
        replies: list[Reply] = []
        async with asyncio.timeout_at(deadline):
            while len(replies) < count:
                reply = parser.next_reply()
                if reply is not None:
                    replies.append(reply)
                    continue
                data = await stream[0].read(_CHUNK)
                if not data:
                    raise ConnectionResetError("memcached closed the connection")
                parser.feed(data)
        return replies

    async def _node(
        self, node: str, stream: Stream | None, commands: list[bytes], deadline: float
    ) -> list[Reply] | StoreError:
        """Read ``node``'s replies (its commands were written on ``stream`` already);
        a stale pooled stream gets one fresh attempt, as in the sync flavour."""
        fresh = stream is None
        try:
            try:
                if stream is None:
                    raise ConnectionResetError("not sent")
                replies = await self._read(stream, len(commands), deadline)
            except (OSError, ProtocolError) as exc:
                if stream is not None:
                    stream[1].close()
                if fresh is False and not _stale(exc):
                    raise
                stream = await self._open(node)
                stream[1].write(b"".join(commands))
                replies = await self._read(stream, len(commands), deadline)
        except (OSError, ProtocolError) as exc:
            if stream is not None:
                stream[1].close()
            return self._fail(node, exc)
        except BaseException:  # cancelled mid-reply: the stream is out of step, drop it
            if stream is not None:
                stream[1].close()
            raise
        self._idle[node].append(stream)
        return replies

    async def exchange(self, request: Request) -> Answer:
        """Write every node's commands, then read each node's replies: the nodes work in
        parallel without a task per node (cheaper than ``gather`` for two nodes)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (tests, reloads): old streams are unusable
            self._loop, self._idle = loop, {n: [] for n in self.specs}
        self.exchanges += 1
        self.sends += len(request)
        written: list[tuple[str, Stream | None]] = []
        for node, commands in request.items():
            self.commands += len(commands)
            idle = self._idle[node]
            stream = idle.pop() if idle else None
            if stream is not None:
                stream[1].write(b"".join(commands))
            written.append((node, stream))
        deadline = loop.time() + self.timeout
        return {
            node: await self._node(node, stream, request[node], deadline)
            for node, stream in written
        }

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
            idle.clear()
