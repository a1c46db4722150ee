"""asyncio TCP links between members: HELLO handshake, requests, replies, notifications.

One ``Link`` is one TCP connection. Each member dials every other member once and
uses that connection for its own requests and notifications (heartbeats, pushes);
the connections other members dialled to it carry their requests. A ``Link`` is an
``asyncio.Protocol`` rather than a stream pair: frames are decoded in
``data_received`` with no task switch per frame, which is most of the cost of a
replication round trip on loopback.

**Requests travel in batches, as TCP segments do under Nagle's algorithm.** Under
load a member serves many clients at once, and each of their requests would otherwise
pay for its own frame: a msgpack encode, an HMAC on each side, a system call on each
side and a wake-up of the other process, plus the same again for the reply. So a call
leaves at once only when no request of its kind (its timeout) is waiting for a reply;
otherwise it joins the open batch, which leaves when that reply arrives (or at the
link's first watchdog tick ``HOLD_AT_MOST`` after it opened: within 2-4 ms, so one slow
call never holds the others back for long). The other
side answers every call of a batch together, and each caller gets its own answer (or
its own error) back. An idle link thus adds no delay, and a busy one sends about one
frame per round trip whatever the load. Measured on 2 nodes under load
(docs/replication.md) this beat both a frame per call and a batch per loop turn.

**Answers ride on the answering member's own requests.** Between two busy members
both connections carry calls, so the answers a member owes go out on *its* connection
to the asker, in the frame of the calls gathering there (they leave early: the frame
goes anyway), and only in a REPLY frame of their own when nothing is gathering
(``_settle``). One frame each way per round trip instead of two. Request ids are
unique in the process, so an answer arriving on the other connection settles only its
own request (``_resolve``); answers never ride on a connection to an earlier process
of the asker (``_carrier`` compares the HELLO's incarnation).

What a link does with a frame is the member's business (``Hub``); the link only
guarantees that the member sees authentic, in-order frames from a configured
member (``frames.py``) and that everything else is logged and cut off.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import types
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from sessionshare.core.ids import is_valid_name
from sessionshare.replication.frames import Frame, FrameDecoder, FrameEncoder, FrameError, Kind

__all__ = ["Hub", "Link", "LinkClosed", "RemoteError", "connect"]

log = logging.getLogger("sessionshare.replication")

NONCE_BYTES = 16
#: what a hub may answer with to make the answer wait: concrete types, since an
#: ``isinstance`` against the ``Awaitable`` ABC costs more than the call it checks.
_AWAITABLES = (types.CoroutineType, asyncio.Future)
#: request ids are unique in this process, not per link: an answer that comes back on
#: another link than its request (module doc) can never settle the wrong request.
_request_ids = itertools.count(1)
#: a held batch leaves after this long even if the reply it waits for has not come
#: (at the first watchdog tick after it: ``Link._watch``). Also the tick's period.
HOLD_AT_MOST = 0.002
#: a watchdog tick this late means this process's own loop was away (SIGSTOP, a long
#: GC pause, an overloaded core): answers may be sitting unread in the sockets, so no
#: call is failed for a timeout in that tick; the next one, after the loop has read its
#: sockets, decides (issue #18: a member resumed from a pause dropped the others for the
#: late answers it had not read yet, and went on as the owner of every session alone).
LATE_TICK = 0.05


class LinkClosed(ConnectionError):
    """The connection ended (or never completed its HELLO) before the answer came."""


class RemoteError(Exception):
    """The other member answered a request with an error."""


class Hub(Protocol):
    """What a link needs from its member."""

    name: str
    incarnation: int
    key: bytes
    #: the route of this member's app node (``None``: routes are off); peers learn it
    #: from the HELLO, so they can point a session's cookie at its owner (node.py).
    route: str | None
    #: ``requests_sent``, ``calls_sent`` (their ratio is the batching achieved) and
    #: ``replies_sent`` (answers that could not ride on a request).
    counters: dict[str, int]

    def is_member(self, name: str) -> bool: ...

    def frame_dropped(self, link: Link, reason: str) -> None: ...

    def link_up(self, link: Link) -> None: ...

    def link_down(self, link: Link) -> None: ...

    def on_request(self, link: Link, method: str, args: list[Any]) -> Any:
        """The answer to one call, or a coroutine (or future) to wait for it."""
        ...

    def on_notify(self, link: Link, method: str, args: list[Any]) -> None: ...

    def carrier(self, peer: str) -> Link | None:
        """The link this member dialled to ``peer`` if it is up: answers owed to
        ``peer`` ride on its next frame (module doc)."""
        ...

    def answers_for(self, peer: str) -> Link | None:
        """The link whose requests to ``peer`` an answer from ``peer`` may settle."""
        ...


@dataclass(slots=True)
class _Batch:
    """Calls that leave together: they share one frame, one reply and one deadline.

    Each caller waits on a future of its own, so a caller that is cancelled (its
    client went away) cancels nothing for the others.
    """

    timeout: float
    calls: list[list[Any]] = field(default_factory=list)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    #: ``loop.time()`` by which it must leave (gathering) or be given up (sent).
    deadline: float = 0.0

    def fail(self, error: BaseException) -> None:
        for future in self.futures:
            if not future.done():
                future.set_exception(error)

    def answer(self, answers: list[list[Any]]) -> None:
        for future, (ok, result) in zip(self.futures, answers, strict=True):
            if not future.done():
                if ok:
                    future.set_result(result)
                else:
                    future.set_exception(RemoteError(str(result)))


class Link(asyncio.Protocol):
    """One authenticated connection, either direction; ``peer`` is known after HELLO."""

    def __init__(self, hub: Hub, *, expected_peer: str | None = None) -> None:
        self.hub = hub
        self.expected_peer = expected_peer
        self.peer: str | None = None
        self.peer_incarnation = 0
        self.peer_route: str | None = None
        self.peername: Any = None
        self._nonce = os.urandom(NONCE_BYTES)
        #: signs what this side sends: over the empty nonce for the HELLO, then over
        #: the peer's own HELLO nonce (``frames.py``).
        self._encoder = FrameEncoder(hub.key, b"")
        self._decoder = FrameDecoder(hub.key, self._nonce)
        self._transport: asyncio.Transport | None = None
        self._counter = 0
        #: batches sent and not answered yet, by request id.
        self._pending: dict[int, _Batch] = {}
        #: the batch being gathered, per timeout (calls of one timeout share a batch).
        self._batches: dict[float, _Batch] = {}
        #: timeout -> id of the last batch of that timeout sent and not answered yet.
        self._in_flight: dict[float, int] = {}
        self._writable: asyncio.Future[None] | None = None
        #: the one timer of this link, ticking while calls gather or wait (``_watch``).
        self._watchdog: asyncio.TimerHandle | None = None
        #: when the watchdog should tick: a tick much later means the loop was away.
        self._watchdog_due = 0.0
        #: answers this member owes the peer, to leave with the next frame to it.
        self._owed: list[list[Any]] = []
        #: frames queued for the next write (``_send``, ``_flush``).
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        #: links live and die on their member's loop; kept, not looked up per call.
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[Link] = self._loop.create_future()
        self.closed = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("up" if self.ready.done() else "hello")
        return f"<Link {self.hub.name}<->{self.peer or '?'} {state} pending={len(self._pending)}>"

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.peername = transport.get_extra_info("peername")
        self._send(Kind.HELLO, [self.hub.name, self._nonce, self.hub.incarnation, self.hub.route])
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._decoder.feed(data)
        carriers: list[Link] = []
        while not self.closed:
            try:
                frame = self._decoder.next_frame()
                if frame is None:
                    break
                self._dispatch(frame, carriers)
            except FrameError as exc:
                self._refuse(exc.reason)
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                self._refuse(f"malformed frame body: {exc!r}")
        # Answers made for these frames leave now, not a loop turn later: the other
        # side is waiting for them.
        for carrier in carriers:
            unsent = carrier._settle()
            if unsent and not self.closed:
                self._send(Kind.REPLY, [unsent])
                self.hub.counters["replies_sent"] += 1
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = LinkClosed(f"link to {self.peer or self.peername} closed")
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # retrieved: nobody may be waiting for it
        for batch in [*self._pending.values(), *self._batches.values()]:
            batch.fail(error)
        self._pending.clear()
        self._batches.clear()
        self._in_flight.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self.hub.link_down(self)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- frames in --------------------------------------------------------------------------

    def _refuse(self, reason: str) -> None:
        self.hub.frame_dropped(self, reason)
        self.close()

    def _dispatch(self, frame: Frame, carriers: list[Link]) -> None:
        body = frame.body
        if frame.kind is Kind.REQUEST:
            request_id, calls, answers = body
            results = self._answer(int(request_id), calls)
            if results is not None:
                carrier = self._carrier()
                carrier._owed.append([int(request_id), True, results])
                if carrier not in carriers:
                    carriers.append(carrier)
            # Settled after our answers are owed: a batch these answers release leaves
            # with them (one frame each way per round trip under load).
            self._resolve(answers)
        elif frame.kind is Kind.REPLY:
            self._resolve(body[0])
        elif frame.kind is Kind.NOTIFY:
            method, args = body
            self.hub.on_notify(self, str(method), list(args))
        else:
            self._hello(body)

    def _hello(self, body: Any) -> None:
        name, nonce, incarnation, route = body
        if not isinstance(name, str) or not self.hub.is_member(name) or name == self.hub.name:
            raise FrameError(f"HELLO from {name!r}, which is not a configured member")
        if self.expected_peer is not None and name != self.expected_peer:
            raise FrameError(f"dialled {self.expected_peer} but {name!r} answered")
        if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
            raise FrameError("HELLO nonce has the wrong size")
        if route is not None and not (isinstance(route, str) and is_valid_name(route)):
            raise FrameError(f"HELLO route {route!r} is not a valid route name")
        self.peer, self.peer_incarnation = name, int(incarnation)
        self._encoder = FrameEncoder(self.hub.key, nonce)
        self.peer_route = route
        self.ready.set_result(self)
        self.hub.link_up(self)

    def _carrier(self) -> Link:
        """The link answers to this link's requests leave on: the one this member
        dialled to the same process if it is up (its next frame takes them along),
        else this one. Never a link to an earlier process of that member: an answer
        there would reach nobody."""
        assert self.peer is not None
        carrier = self.hub.carrier(self.peer)
        if (
            carrier is None
            or carrier.closed
            or carrier.peer_incarnation != self.peer_incarnation
            or not carrier.ready.done()
        ):
            return self
        return carrier

    def _settle(self) -> list[list[Any]]:
        """Send the answers owed to the peer: with the batch gathering here if there is
        one (it leaves early: a frame goes anyway), else in a REPLY of their own.
        Returns what could not be sent (this link closed meanwhile)."""
        owed = self._owed
        if not owed:
            return []
        if self.closed:
            self._owed = []
            return owed
        gathering = next(iter(self._batches.values()), None)
        if gathering is not None:
            self._send_batch(gathering)  # takes the owed answers along
        if self._owed:
            self._send(Kind.REPLY, [self._owed])
            self._owed = []
            self.hub.counters["replies_sent"] += 1
        self._flush()
        return []

    def _resolve(self, answers: list[list[Any]]) -> None:
        """Settle the requests ``answers`` are for: sent on this link, or on the link
        this member dialled to the peer (answers ride on the peer's own frames)."""
        other: Link | None = None
        for request_id, ok, results in answers:
            link, batch = self, self._pending.pop(int(request_id), None)
            if batch is None:
                if other is None:
                    assert self.peer is not None
                    other = self.hub.answers_for(self.peer) or self
                link, batch = other, other._pending.pop(int(request_id), None)
                if batch is None:
                    continue  # timed out and given up meanwhile
            if ok:
                batch.answer(list(results))
            else:
                batch.fail(RemoteError(str(results)))
            link._answered(int(request_id), batch.timeout)

    def _answer(self, request_id: int, calls: list[list[Any]]) -> Any:
        """Answer every call of a request: ``[ok, result]`` each, in order.

        Most calls are answered at once, and the answers are returned; a call whose
        answer must wait (an owner waiting for other holders' acknowledgements, a
        state transfer) makes the whole reply wait: then ``None`` is returned and the
        answers leave together in a REPLY of their own once all are known.
        """
        answers: list[list[Any]] = []
        waiting: list[tuple[int, Awaitable[Any]]] = []
        for method, args in calls:
            try:
                result = self.hub.on_request(self, method, args)
            except Exception as exc:  # a bad call is answered with an error, not a crash
                answers.append(self._error(method, exc))
                continue
            if isinstance(result, _AWAITABLES):
                waiting.append((len(answers), result))
                answers.append([])
            else:
                answers.append([True, result])
        if not waiting:
            return answers
        task = asyncio.ensure_future(self._answer_later(calls, answers, waiting))
        task.add_done_callback(lambda done: self._send_if_open(request_id, done))
        return None

    async def _answer_later(
        self,
        calls: list[list[Any]],
        answers: list[list[Any]],
        waiting: list[tuple[int, Awaitable[Any]]],
    ) -> list[list[Any]]:
        results = await asyncio.gather(*(call for _, call in waiting), return_exceptions=True)
        for (index, _), result in zip(waiting, results, strict=True):
            if isinstance(result, BaseException):
                answers[index] = self._error(calls[index][0], result)
            else:
                answers[index] = [True, result]
        return answers

    def _send_if_open(self, request_id: int, task: asyncio.Future[list[list[Any]]]) -> None:
        if self.closed or task.cancelled():
            return
        self._send(Kind.REPLY, [[[request_id, True, task.result()]]])
        self._flush()

    def _error(self, method: str, exc: BaseException) -> list[Any]:
        log.warning("request %s from %s failed: %r", method, self.peer, exc)
        return [False, f"{type(exc).__name__}: {exc}"]

    # -- frames out --------------------------------------------------------------------------

    def _send(self, kind: Kind, body: Any) -> None:
        """Queue one frame; it leaves with the next ``_flush``, which whoever queued it
        calls or schedules (frames queued meanwhile share its system call)."""
        if self.closed or self._transport is None:
            raise LinkClosed(f"link to {self.peer or self.peername} is closed")
        data = self._encoder.encode(kind, self._counter, body)
        self._counter += 1
        self._outbox.append(data)

    def _flush(self) -> None:
        outbox = self._outbox
        if outbox and not self.closed and self._transport is not None:
            self._transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))
        outbox.clear()

    def _flush_soon(self) -> None:
        """Flush at the end of this loop turn: notifications made in one turn
        (heartbeats to one member, say) then share one write."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def notify(self, method: str, args: list[Any]) -> None:
        self._send(Kind.NOTIFY, [method, args])
        self._flush_soon()

    def request(self, method: str, args: list[Any], timeout: float) -> asyncio.Future[Any]:
        """Call ``method`` on the other member: a future of its answer, failed with
        ``TimeoutError`` after ``timeout`` seconds. The call leaves at once or with the
        next batch (module doc). A plain function, not a coroutine: this is on the path
        of every replicated write, and a coroutine frame per call shows in its cost."""
        if self.closed:
            raise LinkClosed(f"link to {self.peer or self.peername} is closed")
        future = self._loop.create_future()
        batch = self._batches.get(timeout)
        if batch is not None:  # one is gathering: join it
            batch.calls.append([method, args])
            batch.futures.append(future)
            return future
        batch = _Batch(timeout, [[method, args]], [future])
        if timeout in self._in_flight:  # gather until its reply comes
            self._batches[timeout] = batch
            batch.deadline = self._loop.time() + HOLD_AT_MOST
            self._watch()
        else:
            self._send_batch(batch)
        return future

    def _send_batch(self, batch: _Batch) -> None:
        """Send ``batch`` as one request (and stop gathering into it)."""
        if self._batches.get(batch.timeout) is batch:
            del self._batches[batch.timeout]
        for future in batch.futures:
            if not future.done():
                break
        else:
            return  # failed with the link meanwhile, or every caller gave up
        request_id = next(_request_ids)
        owed, self._owed = self._owed, []
        try:
            self._send(Kind.REQUEST, [request_id, batch.calls, owed])
        except (LinkClosed, TypeError, ValueError, OverflowError) as exc:  # closed, unencodable
            self._owed = owed
            batch.fail(exc)
            return
        self._pending[request_id] = batch
        self._in_flight[batch.timeout] = request_id
        self.hub.counters["requests_sent"] += 1
        self.hub.counters["calls_sent"] += len(batch.calls)
        batch.deadline = self._loop.time() + batch.timeout
        self._watch()
        self._flush()

    def _answered(self, request_id: int, timeout: float) -> None:
        """A batch got its reply (or timed out): the batch gathered behind it may go."""
        if self._in_flight.get(timeout) == request_id:
            del self._in_flight[timeout]
            waiting = self._batches.get(timeout)
            if waiting is not None and not self.closed:
                self._send_batch(waiting)

    def _watch(self) -> None:
        """Make sure the watchdog ticks: every ``HOLD_AT_MOST`` while calls gather or
        wait for answers; it stops when none do.

        One ticking timer per link, not a timer per batch nor one re-armed at each
        new deadline: under load a link sends thousands of batches a second, nearly
        all leave and are answered long before their deadlines, and each timer made
        and cancelled (or moved) cost more than the rest of the batching. A tick that
        finds nothing due costs less, and at most a few hundred happen a second.
        Deadlines are thus kept to within one tick (2 ms).
        """
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(HOLD_AT_MOST, self._on_watchdog)
            self._watchdog_due = self._loop.time() + HOLD_AT_MOST

    def _on_watchdog(self) -> None:
        self._watchdog = None
        if self.closed:
            return
        now = self._loop.time()
        for batch in list(self._batches.values()):
            if batch.deadline <= now:
                self._send_batch(batch)  # held long enough
        if now - self._watchdog_due <= LATE_TICK:  # else: read the sockets first (LATE_TICK)
            for request_id, batch in list(self._pending.items()):
                if batch.deadline <= now:
                    self._expire(request_id)
        if self._batches or self._pending:
            self._watch()

    def _expire(self, request_id: int) -> None:
        batch = self._pending.pop(request_id, None)
        if batch is not None:
            batch.fail(TimeoutError())
            self._answered(request_id, batch.timeout)

    async def drain(self) -> None:
        """Write what is queued and wait until the kernel took it (bulk transfers)."""
        self._flush()
        if self._writable is not None:
            await self._writable
        else:
            await asyncio.sleep(0)  # let the loop run between chunks

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.abort()
        self.closed = True


async def connect(hub: Hub, name: str, host: str, port: int, timeout: float) -> Link:
    """Dial ``name`` and complete the HELLO exchange within ``timeout`` seconds.

    A member that is paused (``kill -STOP``) still accepts TCP connections in its
    kernel but never says HELLO; the timeout covers that too.
    """
    loop = asyncio.get_running_loop()

    async def dial() -> Link:
        _, link = await loop.create_connection(lambda: Link(hub, expected_peer=name), host, port)
        try:
            return await link.ready
        except BaseException:
            link.close()
            raise

    try:
        return await asyncio.wait_for(dial(), timeout)
    except TimeoutError:
        raise LinkClosed(f"{name} at {host}:{port} did not answer within {timeout}s") from None
