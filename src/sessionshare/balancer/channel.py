"""One TCP connection as an asyncio ``Protocol`` that parses HTTP as bytes arrive.

Why not ``asyncio.StreamReader``/``StreamWriter``: the first version used them and spent
most of its time in their bookkeeping (copying into and out of the reader's buffer, one
``asyncio.timeout`` context per read). Here ``data_received`` feeds httptools directly and
wakes the waiting coroutine only when a whole event (a head, body bytes, the end) exists,
so a small request costs one wake-up, and a timer only exists while someone waits.
Back-pressure stays: reading pauses while more than ``HIGH_WATER`` body bytes wait to be
consumed, and ``drain()`` waits while the transport's write buffer is full.
"""

from __future__ import annotations

import asyncio
from typing import Final, cast

import httptools

from sessionshare.balancer.http import End, Head, MessageEvents

__all__ = ["HIGH_WATER", "Channel", "HeadTooLarge"]

#: Body bytes parsed but not yet consumed before reading pauses (per connection).
HIGH_WATER: Final = 256 * 1024
LOW_WATER: Final = 64 * 1024


class HeadTooLarge(Exception):
    """More bytes than the head limit arrived without a complete head (→ 431)."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Channel(asyncio.Protocol):
    """A connection whose incoming bytes become ``Head`` / ``bytes`` / ``END`` events.

    ``next_event`` raises ``TimeoutError`` when nothing comes in time, ``EOFError`` when
    the peer closed, ``HeadTooLarge`` / ``httptools.HttpParserError`` for bad input.
    """

    def __init__(self, response: bool, head_limit: int) -> None:
        self.response = response
        self.head_limit = head_limit
        self.messages = MessageEvents(response)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.closed = False  # the peer closed (EOF) or the connection is lost
        self.received = 0  # bytes since the last ``expect_response``: a stale socket has 0
        self._unparsed = 0  # bytes fed since the last event, bounded by head_limit
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        # Pool bookkeeping (node side only): when it went idle, and whether it is reused.
        self.idle_since = 0.0
        self.reused = False

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but has its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        messages = self.messages
        before = len(messages.events)
        try:
            messages.feed(data)
        except httptools.HttpParserError as exc:  # includes HttpParserUpgrade
            self._error = exc
            self._pause_reading()
        if len(messages.events) == before:
            self._unparsed += len(data)
            if self._unparsed > self.head_limit:
                self._error = HeadTooLarge()
                self._pause_reading()
        else:
            self._unparsed = 0
        if messages.queued > HIGH_WATER:
            self._pause_reading()
        if messages.events or self._error is not None:
            self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close our side too: HTTP/1.1 has no use for half-open connections

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- for the proxy -----------------------------------------------------------------
    async def next_event(self, timeout: float) -> Head | bytes | End:
        events = self.messages.events
        while not events:
            if self._error is not None:
                raise self._error
            if self.closed:
                raise EOFError
            waiter = self.loop.create_future()
            self._waiter = waiter
            timer = self.loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        event = events.popleft()
        if type(event) is bytes:
            messages = self.messages
            messages.queued -= len(event)
            if self._read_paused and messages.queued < LOW_WATER and self._error is None:
                self._read_paused = False
                assert self.transport is not None
                self.transport.resume_reading()
        return event

    def pending(self) -> bool:
        """Whether an event is ready without waiting."""
        return bool(self.messages.events)

    def expect_response(self) -> None:
        """Before each request on a pooled connection: a fresh response parser.

        A fresh parser per response is also how HEAD works: llhttp cannot be told that a
        HEAD answer's Content-Length announces no body, so its parser is simply dropped.
        """
        self.messages = MessageEvents(response=True)
        self.received = 0
        self._unparsed = 0

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("connection closed")
        self.transport.write(data)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait while the write buffer is full; ``TimeoutError`` if it stays full."""
        if self.closed:
            raise ConnectionResetError("connection closed")
        if not self._write_paused:
            return
        waiter = self.loop.create_future()
        self._drain_waiter = waiter
        timer = None if timeout is None else self.loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._drain_waiter = None

    def is_closing(self) -> bool:
        return self.closed or self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.closed = True

    def peer_ip(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else "127.0.0.1"

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __repr__(self) -> str:
        side = "node" if self.response else "client"
        state = "closed" if self.is_closing() else "open"
        return f"<Channel {side} {state} queued={self.messages.queued} received={self.received}>"
