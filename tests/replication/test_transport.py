"""Two links over a real loopback socket: requests made while one is in flight share a frame.

The hub here is a test partner that records what it is asked (the member's own
behaviour is tested in test_node.py); the sockets, frames and signatures are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from sessionshare.replication import transport
from sessionshare.replication.frames import derive_key
from sessionshare.replication.transport import Link, RemoteError, connect


class RecordingHub:
    """Answers ``echo`` at once, ``slow`` after a while, and fails ``boom``."""

    def __init__(self, name: str, incarnation: int = 1) -> None:
        self.name = name
        self.incarnation = incarnation
        self.route = f"route_{name}"
        self.key = derive_key("secret")
        self.counters: dict[str, int] = {"requests_sent": 0, "calls_sent": 0, "replies_sent": 0}
        self.calls: list[tuple[str, list[Any]]] = []
        self.links: list[Link] = []
        #: the link this hub dialled, if any (``pair``): answers ride on it (transport.py)
        self.out: Link | None = None

    def is_member(self, name: str) -> bool:
        return name in ("a", "b")

    def frame_dropped(self, link: Link, reason: str) -> None:
        raise AssertionError(reason)

    def link_up(self, link: Link) -> None:
        self.links.append(link)

    def link_down(self, link: Link) -> None:
        pass

    def on_request(self, link: Link, method: str, args: list[Any]) -> Any:
        self.calls.append((method, args))
        if method == "boom":
            raise ValueError("no such thing")
        if method == "slow":
            return self._slow(args[0])
        return args[0]

    async def _slow(self, value: Any) -> Any:
        await asyncio.sleep(0.05)
        return value

    def on_notify(self, link: Link, method: str, args: list[Any]) -> None:
        pass

    def carrier(self, peer: str) -> Link | None:
        return self.out if self.out is not None and self.out.peer == peer else None

    answers_for = carrier


@asynccontextmanager
async def linked() -> AsyncIterator[tuple[RecordingHub, RecordingHub, Link]]:
    """Hub ``a`` dialled hub ``b``: one connection, closed (with b's server) on exit."""
    a, b = RecordingHub("a"), RecordingHub("b")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Link(b), "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        link = await connect(a, "b", "127.0.0.1", port, timeout=2)
        try:
            yield a, b, link
        finally:
            link.close()
    finally:
        server.close()


@asynccontextmanager
async def paired(
    a: RecordingHub, b: RecordingHub
) -> AsyncIterator[tuple[Link, Link, list[asyncio.Server]]]:
    """Two members as the node runs them: each dials the other (two connections).
    Both links and both servers are closed on exit."""
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(lambda hub=hub: Link(hub), "127.0.0.1", 0)  # type: ignore[misc]
        for hub in (a, b)
    ]
    links: list[Link] = []
    try:
        ports = [server.sockets[0].getsockname()[1] for server in servers]
        a.out = await connect(a, b.name, "127.0.0.1", ports[1], timeout=2)
        links.append(a.out)
        b.out = await connect(b, a.name, "127.0.0.1", ports[0], timeout=2)
        links.append(b.out)
        yield a.out, b.out, servers
    finally:
        for link in links:
            link.close()
        for server in servers:
            server.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def test_requests_made_while_one_is_in_flight_travel_in_one_frame_with_an_answer_each() -> None:
    async def scenario() -> None:
        async with linked() as (a, b, link):
            answers = await asyncio.gather(
                *(link.request("echo", [i], 1.0) for i in range(5)),
                link.request("slow", ["late"], 1.0),
                link.request("boom", [0], 1.0),
                return_exceptions=True,
            )
            assert link.peer == "b" and link.peer_route == "route_b"  # from its HELLO
            assert answers[:6] == [0, 1, 2, 3, 4, "late"]
            assert isinstance(answers[6], RemoteError) and "no such thing" in str(answers[6])
            # The first call left at once; the six made meanwhile left together.
            assert a.counters == {"requests_sent": 2, "calls_sent": 7, "replies_sent": 0}
            assert [method for method, _ in b.calls] == ["echo"] * 5 + ["slow", "boom"]
            # On an idle link a call leaves at once, alone.
            assert await link.request("echo", ["again"], 1.0) == "again"
            assert a.counters == {"requests_sent": 3, "calls_sent": 8, "replies_sent": 0}

    run(scenario)


def test_a_cancelled_caller_does_not_cancel_the_others_in_its_batch() -> None:
    async def scenario() -> None:
        async with linked() as (_, _, link):
            gone = asyncio.ensure_future(link.request("slow", ["gone"], 1.0))
            kept = asyncio.ensure_future(link.request("slow", ["kept"], 1.0))
            await asyncio.sleep(0.01)
            gone.cancel()
            assert await kept == "kept"
            assert gone.cancelled()

    run(scenario)


def test_a_held_batch_leaves_after_hold_at_most_when_the_reply_is_slow() -> None:
    async def scenario() -> None:
        async with linked() as (a, _, link):
            slow = asyncio.ensure_future(link.request("slow", ["first"], 1.0))  # 50 ms
            await asyncio.sleep(0)
            started = asyncio.get_running_loop().time()
            assert await link.request("echo", ["second"], 1.0) == "second"
            assert asyncio.get_running_loop().time() - started < 0.04  # not after "slow"
            assert await slow == "first"
            assert a.counters == {"requests_sent": 2, "calls_sent": 2, "replies_sent": 0}

    run(scenario)


def test_a_batch_times_out_and_fails_when_the_link_closes() -> None:
    async def scenario() -> None:
        async with linked() as (_, _, link):
            with pytest.raises(TimeoutError):
                await link.request("slow", [1], 0.01)
            waiting = asyncio.ensure_future(link.request("slow", [2], 1.0))
            await asyncio.sleep(0.01)
            link.close()  # abort: connection_lost fails what is still waiting
            with pytest.raises(ConnectionError):
                await waiting
            with pytest.raises(ConnectionError):
                await link.request("echo", [3], 1.0)

    run(scenario)


def test_a_held_call_that_cannot_be_encoded_fails_alone() -> None:
    """It leaves when the reply it waits for comes, inside the link's frame handling:
    its error must fail that one batch, not the connection."""

    async def scenario() -> None:
        async with linked() as (_, _, link):
            slow = asyncio.ensure_future(link.request("slow", [1], 1.0))
            await asyncio.sleep(0)
            held = asyncio.ensure_future(link.request("echo", [object()], 1.0))
            assert await slow == 1
            with pytest.raises(TypeError):  # msgpack cannot encode it
                await held
            assert await link.request("echo", ["next"], 1.0) == "next"
            assert not link.closed
            with pytest.raises(TimeoutError):  # and the watchdog still ticks
                await asyncio.wait_for(link.request("slow", [2], 0.01), 1.0)

    run(scenario)


def test_answers_ride_on_the_other_members_next_request() -> None:
    """B owes A an answer while B's own calls are gathering: one frame carries both."""

    async def scenario() -> None:
        a, b = RecordingHub("a"), RecordingHub("b")
        async with paired(a, b) as (a_out, b_out, _):
            transport_hold = transport.HOLD_AT_MOST
            transport.HOLD_AT_MOST = 5.0  # B's second call gathers until something sends it
            try:
                slow = asyncio.ensure_future(b_out.request("slow", ["first"], 2.0))
                await asyncio.sleep(0.005)
                held = asyncio.ensure_future(b_out.request("echo", ["held"], 2.0))
                await asyncio.sleep(0.005)
                assert b.counters["requests_sent"] == 1  # "held" is gathering
                # A asks B: B's answer leaves at once, and takes "held" along.
                assert await asyncio.wait_for(a_out.request("echo", ["ask"], 2.0), 1) == "ask"
                assert await asyncio.wait_for(held, 0.04) == "held"  # long before "slow"
                assert not slow.done()
                assert await slow == "first"
            finally:
                transport.HOLD_AT_MOST = transport_hold
            assert b.counters == {"requests_sent": 2, "calls_sent": 2, "replies_sent": 0}
            assert a.calls == [("slow", ["first"]), ("echo", ["held"])]

    run(scenario)


def test_answers_never_ride_to_an_earlier_process_of_the_asker() -> None:
    """B still has a link to A's previous process; the new A's answers come back direct."""

    async def scenario() -> None:
        old_a, b = RecordingHub("a", incarnation=1), RecordingHub("b")
        async with paired(old_a, b) as (_, b_out, servers):  # b.out reaches the old "a"
            new_a = RecordingHub("a", incarnation=2)
            port = servers[1].sockets[0].getsockname()[1]
            new_out = await connect(new_a, "b", "127.0.0.1", port, timeout=2)
            try:
                assert b.carrier("a") is b_out and b_out.peer_incarnation == 1
                answer = await asyncio.wait_for(new_out.request("echo", ["direct"], 2.0), 1)
                assert answer == "direct"
                assert b.counters["replies_sent"] == 1  # a REPLY of its own, on the asker's link
            finally:
                new_out.close()

    run(scenario)
