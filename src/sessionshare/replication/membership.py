"""Static membership and failure detection, with no I/O.

Members come from the cluster file (``members = ["node1=127.0.0.1:4001", ...]``),
as Tomcat's ``StaticMembershipService`` takes them; nothing is discovered. What
changes at run time is each member's *state* as this member sees it:

- ``DOWN``: never heard, or dropped;
- ``SYNCING``: alive and receiving the state transfer: it gets every change but
  does not own sessions yet;
- ``READY``: alive and complete: it owns sessions (placement.py ranks it).

Timing follows Tomcat's membership defaults (cluster-membership docs,
``McastService``): a heartbeat every 500 ms (``frequency``) and a member silent for
3 s (``dropTime``) is *suspect*; like Tomcat's ``TcpFailureDetector`` the member
then checks it over TCP (a ping that must be answered) before dropping it, so a
busy member is not dropped for a late heartbeat alone.

A member that comes back is only trusted again under a new *epoch*: each time a
member (re)starts its state transfer it bumps its epoch, and a drop names the
``(incarnation, epoch)`` it applies to. Drops travel in heartbeats (gossip), so a
member that was dropped while paused (``kill -STOP``) learns it and re-syncs
before it serves again, and one member's drop decision reaches all the others.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sessionshare.core.ids import is_valid_name
from sessionshare.errors import ConfigError

__all__ = [
    "DROP_AFTER",
    "HEARTBEAT_INTERVAL",
    "MemberAddress",
    "Membership",
    "Peer",
    "Status",
    "own_slots",
    "parse_members",
]

#: Tomcat McastService ``frequency``: seconds between heartbeats.
HEARTBEAT_INTERVAL = 0.5
#: Tomcat McastService ``dropTime``: seconds of silence before a member is suspect.
DROP_AFTER = 3.0

_LOOPBACK = "127.0.0.1"
_ENTRY_RE = re.compile(
    r"^(?P<name>[^=\s]+)=(?:(?P<host>[^\s:]+|\[[0-9a-fA-F:]+\]):)?(?P<port>\d+)$"
)


class Status(enum.IntEnum):
    DOWN = 0
    SYNCING = 1
    READY = 2


@dataclass(frozen=True, slots=True)
class MemberAddress:
    """One configured member: its name and where its replication port listens."""

    name: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.name}={self.host}:{self.port}"


def parse_members(spec: str | Sequence[str]) -> list[MemberAddress]:
    """``"node1=127.0.0.1:4001 node2=4002"`` (or a TOML list) -> addresses.

    A bare port means loopback: members bind to 127.0.0.1 unless told otherwise.
    """
    items = spec.replace(",", " ").split() if isinstance(spec, str) else list(spec)
    members: list[MemberAddress] = []
    for item in items:
        match = _ENTRY_RE.match(item.strip())
        if match is None:
            raise ConfigError(
                f"members: expected NAME=HOST:PORT or NAME=PORT, got {item!r} "
                "(e.g. members = ['node1=127.0.0.1:4001', 'node2=127.0.0.1:4002'])"
            )
        name, port = match["name"], int(match["port"])
        if not is_valid_name(name):
            raise ConfigError(f"members: {name!r} is not a valid name (1-32 of A-Z a-z 0-9 _)")
        if not 0 < port < 65536:
            raise ConfigError(f"members: port {port} of {name} is out of range")
        members.append(MemberAddress(name, (match["host"] or _LOOPBACK).strip("[]"), port))
    names = [m.name for m in members]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"members: duplicate name(s) {', '.join(duplicates)}")
    if not members:
        raise ConfigError("members: the list is empty; name every member, this one included")
    return members


def own_slots(members: Sequence[MemberAddress], member_name: str) -> list[MemberAddress]:
    """The entries this process may claim: ``member_name`` itself, then ``<name>_<n>``.

    A node that runs several worker processes lists one member per worker
    (``node1``, ``node1_2``, ...); each worker claims the first whose port it can bind.
    """
    slots = [m for m in members if m.name == member_name]
    slots += [m for m in members if re.fullmatch(rf"{re.escape(member_name)}_\d+", m.name)]
    if not slots:
        listed = ", ".join(m.name for m in members)
        raise ConfigError(f"member_name: {member_name!r} is not in members ({listed})")
    return slots


@dataclass(slots=True)
class Peer:
    """What this member knows of another one."""

    address: MemberAddress
    status: Status = Status.DOWN
    incarnation: int = 0
    epoch: int = 0
    last_heard: float = 0.0
    #: the (incarnation, epoch) this member dropped; that epoch is never trusted again.
    dropped: tuple[int, int] | None = None
    #: the route of its app node, from its HELLO (``None``: unknown, or routes are off).
    route: str | None = None

    @property
    def name(self) -> str:
        return self.address.name


class Membership:
    """The other members' states; every method is a pure state change for ``now``."""

    def __init__(self, peers: Iterable[MemberAddress], *, drop_after: float = DROP_AFTER) -> None:
        self.peers = {address.name: Peer(address) for address in peers}
        self.drop_after = drop_after

    def __repr__(self) -> str:
        states = " ".join(f"{p.name}:{p.status.name}" for p in self.peers.values())
        return f"<Membership {states}>"

    def heard_from(self, name: str, now: float) -> None:
        """Any authentic frame from ``name`` proves it alive."""
        peer = self.peers.get(name)
        if peer is not None:
            peer.last_heard = now

    def announce(self, name: str, status: Status, incarnation: int, epoch: int, now: float) -> bool:
        """``name`` says it is ``status`` in ``(incarnation, epoch)``; True if the view changed."""
        peer = self.peers.get(name)
        if peer is None or status is Status.DOWN:
            return False
        peer.last_heard = now
        if peer.dropped == (incarnation, epoch):
            return False  # a dropped epoch stays dropped until the member re-syncs
        if incarnation == peer.incarnation and epoch < peer.epoch:
            return False  # a late frame from an epoch already replaced
        changed = (peer.status, peer.incarnation, peer.epoch) != (status, incarnation, epoch)
        peer.status, peer.incarnation, peer.epoch = status, incarnation, epoch
        if changed:
            peer.dropped = None
        return changed

    def drop(self, name: str) -> bool:
        """Mark ``name`` down for its current epoch; True if it was up."""
        peer = self.peers.get(name)
        if peer is None or peer.status is Status.DOWN:
            return False
        peer.status = Status.DOWN
        peer.dropped = (peer.incarnation, peer.epoch)
        return True

    def silent(self, now: float) -> list[str]:
        """Members up in this view but not heard for ``drop_after`` seconds (suspects)."""
        return [
            p.name
            for p in self.peers.values()
            if p.status is not Status.DOWN and now - p.last_heard > self.drop_after
        ]

    def with_status(self, *statuses: Status) -> list[str]:
        return sorted(p.name for p in self.peers.values() if p.status in statuses)

    def gossip(self) -> list[list[object]]:
        """The drops this member knows of, for its heartbeats."""
        return [[p.name, *p.dropped] for p in self.peers.values() if p.dropped is not None]

    def adopt(self, drops: Sequence[Sequence[object]], me: str, mine: tuple[int, int]) -> bool:
        """Apply another member's drops; True if one of them names this member's epoch.

        Drops of other members are applied here too (one member's evidence is enough:
        the dropped member re-syncs under a new epoch anyway).
        """
        self_dropped = False
        for item in drops:
            if len(item) != 3:
                continue
            name, incarnation, epoch = item
            if name == me:
                self_dropped |= (incarnation, epoch) == mine
                continue
            peer = self.peers.get(str(name))
            if peer is None:
                continue
            if (peer.incarnation, peer.epoch) == (incarnation, epoch):
                self.drop(peer.name)
            elif peer.status is Status.DOWN:  # not heard yet: refuse that epoch when it is
                peer.dropped = (int(incarnation), int(epoch))  # type: ignore[call-overload]
        return self_dropped
