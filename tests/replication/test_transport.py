"""Two links over a real loopback socket: requests made while one is in flight share a frame.

The hub here is a test partner that records what it is asked (the member's own
behaviour is tested in test_node.py); the sockets, frames and signatures are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sessionshare.replication.frames import derive_key
from sessionshare.replication.transport import Link, RemoteError, connect


class RecordingHub:
    """Answers ``echo`` at once, ``slow`` after a while, and fails ``boom``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.incarnation = 1
        self.route = f"route_{name}"
        self.key = derive_key("secret")
        self.counters: dict[str, int] = {"requests_sent": 0, "calls_sent": 0, "replies_sent": 0}
        self.calls: list[tuple[str, list[Any]]] = []
        self.links: list[Link] = []

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
        return None  # one link per pair here: answers go back on it

    def answers_for(self, peer: str) -> Link | None:
        return None


async def linked() -> tuple[RecordingHub, RecordingHub, Link, asyncio.Server]:
    a, b = RecordingHub("a"), RecordingHub("b")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Link(b), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = await connect(a, "b", "127.0.0.1", port, timeout=2)
    return a, b, link, server


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def test_requests_made_while_one_is_in_flight_travel_in_one_frame_with_an_answer_each() -> None:
    async def scenario() -> None:
        a, b, link, server = await linked()
        try:
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
        finally:
            link.close()
            server.close()

    run(scenario)


def test_a_cancelled_caller_does_not_cancel_the_others_in_its_batch() -> None:
    async def scenario() -> None:
        _, _, link, server = await linked()
        try:
            gone = asyncio.ensure_future(link.request("slow", ["gone"], 1.0))
            kept = asyncio.ensure_future(link.request("slow", ["kept"], 1.0))
            await asyncio.sleep(0.01)
            gone.cancel()
            assert await kept == "kept"
            assert gone.cancelled()
        finally:
            link.close()
            server.close()

    run(scenario)


def test_a_held_batch_leaves_after_hold_at_most_when_the_reply_is_slow() -> None:
    async def scenario() -> None:
        a, _, link, server = await linked()
        try:
            slow = asyncio.ensure_future(link.request("slow", ["first"], 1.0))  # 50 ms
            await asyncio.sleep(0)
            started = asyncio.get_running_loop().time()
            assert await link.request("echo", ["second"], 1.0) == "second"
            assert asyncio.get_running_loop().time() - started < 0.04  # not after "slow"
            assert await slow == "first"
            assert a.counters == {"requests_sent": 2, "calls_sent": 2, "replies_sent": 0}
        finally:
            link.close()
            server.close()

    run(scenario)


def test_a_batch_times_out_and_fails_when_the_link_closes() -> None:
    async def scenario() -> None:
        _, _, link, server = await linked()
        try:
            with pytest.raises(TimeoutError):
                await link.request("slow", [1], 0.01)
            waiting = asyncio.ensure_future(link.request("slow", [2], 1.0))
            await asyncio.sleep(0.01)
            link.close()  # abort: connection_lost fails what is still waiting
            with pytest.raises(ConnectionError):
                await waiting
            with pytest.raises(ConnectionError):
                await link.request("echo", [3], 1.0)
        finally:
            server.close()

    run(scenario)
