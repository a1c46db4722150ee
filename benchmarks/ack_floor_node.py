"""A demo node whose replication is reduced to its floor: one acknowledged byte.

``benchmarks/replication.py`` runs it as the store ``replicated+floor``: the node is a
normal ``replicated`` member (the same session manager, local table, locks and
ownership), except that where a member would push a changed session to the other
member and wait for its acknowledgement, it sends one byte over a bare asyncio
connection and waits for the same byte to come back. Nothing is encoded, signed or
merged. No design that acknowledges writes before answering can cost less than this
on the same machine, so its row says what share of the target is left to the
replication protocol itself.

Never used by sessionshare itself: a benchmark instrument, run as
``python benchmarks/ack_floor_node.py <sessionshare node arguments>``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sessionshare.cli.main import main
from sessionshare.replication.node import ReplicationNode

#: the echo port of a member: its replication port plus this.
ECHO_OFFSET = 1000


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _Acks(asyncio.Protocol):
    """The dialling side: one future per byte sent, resolved by the byte coming back."""

    def __init__(self) -> None:
        self.waiting: list[asyncio.Future[None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        done, self.waiting = self.waiting[: len(data)], self.waiting[len(data) :]
        for future in done:
            if not future.done():
                future.set_result(None)


_real_start = ReplicationNode.start
_links: dict[int, _Acks] = {}


async def _start(self: ReplicationNode) -> None:
    await _real_start(self)
    loop = asyncio.get_running_loop()
    await loop.create_server(_Echo, "127.0.0.1", self.address.port + ECHO_OFFSET)


async def _acks(self: ReplicationNode) -> _Acks:
    if id(self) not in _links:
        other = next(m for m in self.members if m.name != self.name)
        loop = asyncio.get_running_loop()
        for _ in range(100):
            try:
                _, _links[id(self)] = await loop.create_connection(
                    _Acks, "127.0.0.1", other.port + ECHO_OFFSET
                )
                break
            except OSError:
                await asyncio.sleep(0.1)
    return _links[id(self)]


async def _push(self: ReplicationNode, pushes: dict[str, Any], *, wait: bool) -> None:
    """Instead of the entries: one byte out, and (``wait``) the same byte back."""
    if not pushes:
        return
    acks = await _acks(self)
    future = asyncio.get_running_loop().create_future()
    acks.waiting.append(future)
    acks.transport.write(b"x")
    if wait:
        await future


ReplicationNode.start = _start  # type: ignore[method-assign]
ReplicationNode._push = _push  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
