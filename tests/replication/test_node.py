"""Members joined in one process over loopback: ownership, locks, backup promotion.

The ``ConnectionPair`` idea of h11's tests, with real sockets: several members on one
event loop, so a test can look inside each member's table. The done-when checks on
real app-node processes are in test_cluster.py and test_membership_live.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from sessionshare.core.operations import Add, Delete, Get, Record, Stored, Write
from sessionshare.errors import StoreUnavailable
from sessionshare.replication.membership import Status, parse_members
from sessionshare.replication.node import ReplicationNode
from sessionshare.replication.placement import rank
from tests.servers import free_port

TOKEN = "0123456789abcdef0123456789abcdef"
KEY, LOCK = f"app:s:{TOKEN}", f"app:lock:{TOKEN}"


async def members(count: int, copies: int | None) -> list[ReplicationNode]:
    spec = " ".join(f"m{i}=127.0.0.1:{free_port()}" for i in range(1, count + 1))
    nodes = [
        ReplicationNode(members=parse_members(spec), member_name=f"m{i}", secret="s", copies=copies)
        for i in range(1, count + 1)
    ]
    for node in nodes:
        await node.start()
    await until(lambda: all(n.synced.is_set() and len(n.ready_members()) == count for n in nodes))
    return nodes


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def test_a_lock_is_atomic_across_members_and_writes_are_conditional() -> None:
    async def scenario() -> None:
        nodes = await members(3, copies=None)
        try:
            answers = await asyncio.gather(
                *(n.execute([Add(key=LOCK, value=n.name.encode(), ttl=5)]) for n in nodes)
            )
            assert sorted(a[0] for a in answers) == [False, False, True]
            first = (await nodes[0].execute([Write(key=KEY, value=b"1", ttl=60, version=None)]))[0]
            assert isinstance(first, Stored)
            # Every member holds the acknowledged write, so any may read it locally.
            for node in nodes:
                assert node.read_local(KEY, None) == Record(b"1", first.version)
            stale = Write(key=KEY, value=b"x", ttl=60, version=(first.version[0], 1))  # type: ignore[index]
            assert (await nodes[1].execute([stale]))[0] is None
            second = await nodes[2].execute(
                [Write(key=KEY, value=b"2", ttl=60, version=first.version), Delete(key=LOCK)]
            )
            assert isinstance(second[0], Stored)
            assert (await nodes[1].execute([Get(key=KEY)]))[0].value == b"2"
        finally:
            for node in nodes:
                await node.close()

    run(scenario)


def test_backup_keeps_two_copies_and_the_backup_promotes_itself() -> None:
    async def scenario() -> None:
        nodes = await members(3, copies=2)
        by_name = {n.name: n for n in nodes}
        try:
            primary, backup, other = (by_name[m] for m in rank(TOKEN, list(by_name)))
            stored = (await other.execute([Write(key=KEY, value=b"v", ttl=60, version=None)]))[0]
            assert isinstance(stored, Stored)
            assert primary.table.get(KEY) is not None and backup.table.get(KEY) is not None
            assert other.table.get(KEY) is None  # not a holder: it fetches on demand
            assert (await other.execute([Get(key=KEY)]))[0].value == b"v"

            await primary.close()  # the primary dies
            await until(lambda: primary.name not in backup.ready_members())
            await until(lambda: other.table.get(KEY) is not None)  # the new backup got it
            assert backup.owner(KEY) == backup.name  # promoted
            assert (await other.execute([Get(key=KEY)]))[0].value == b"v"
            version = backup.table.get(KEY).version  # type: ignore[union-attr]
            again = Write(key=KEY, value=b"w", ttl=60, version=version)
            assert isinstance((await other.execute([again]))[0], Stored)
            assert other.table.get(KEY).value == b"w"  # type: ignore[union-attr]
        finally:
            for node in nodes:
                await node.close()

    run(scenario)


def test_a_member_dropped_without_knowing_it_cannot_write_over_the_new_owner() -> None:
    """Issue #18. The others dropped the owner of a session (it acknowledged a write
    late) and moved the session to the next member, which changed it; the old owner has
    not heard of the drop yet. Its write from its stale copy must be refused, not
    answered (a lost update), and it must re-sync and end up with the new owner's copy."""

    async def scenario() -> None:
        nodes = await members(3, copies=None)
        by_name = {n.name: n for n in nodes}
        old_owner, new_owner, third = (by_name[m] for m in rank(TOKEN, list(by_name)))
        try:
            first = (await old_owner.execute([Write(key=KEY, value=b"1", ttl=60, version=None)]))[0]
            assert isinstance(first, Stored)
            for node in (new_owner, third):  # both timed out on its ack; no gossip yet
                node.view.drop(old_owner.name)
                node._view_changed()
            assert new_owner.owner(KEY) == new_owner.name and old_owner.owner(KEY) == old_owner.name
            newer = Write(key=KEY, value=b"2", ttl=60, version=first.version)
            assert isinstance((await new_owner.execute([newer]))[0], Stored)

            stale = Write(key=KEY, value=b"lost", ttl=60, version=first.version)
            with pytest.raises(StoreUnavailable, match="dropped"):
                await old_owner.execute([stale])
            await until(lambda: old_owner.status is Status.READY and old_owner.epoch > 1)
            for node in nodes:
                assert (await node.execute([Get(key=KEY)]))[0].value == b"2", node
                assert node.table.get(KEY).value == b"2", node  # type: ignore[union-attr]
        finally:
            for node in nodes:
                await node.close()

    run(scenario)
