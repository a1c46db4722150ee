"""``store = "replicated"``: every member holds every session (Tomcat DeltaManager).

Each change goes to all members before the response leaves (``node.py``), so any
member answers reads from its own memory and a member can die at any moment
without losing a session. The cost grows with the number of members: every
write is applied N times. For more than a handful of members use ``backup``.

What travels is the whole session envelope rather than a diff of attributes: the
envelope is what the session protocol writes (header + serialized attributes,
usually well under a kilobyte), and a full copy is *idempotent*: a copy that
arrives twice, late or out of order is resolved by its version alone, where a
delta would need the exact previous version at every member and a resend
protocol when one is missed. Unmodified sessions send nothing at all (the
protocol only refreshes their TTL), which is where DeltaManager's deltas save
most of their traffic.
"""

from __future__ import annotations

from sessionshare.replication.store import AsyncPeerStore, PeerStore

__all__ = ["AsyncReplicatedStore", "ReplicatedStore"]


class ReplicatedStore(PeerStore):
    """All-to-all replication, blocking face (WSGI)."""

    kind = "replicated"
    copies = None


class AsyncReplicatedStore(AsyncPeerStore):
    """All-to-all replication, async face (ASGI)."""

    kind = "replicated"
    copies = None
