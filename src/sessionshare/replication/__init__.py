"""Peer replication: app nodes share sessions with no external server (SPEC §4).

- ``frames.py``: the signed wire format; ``messages.py``: operations on the wire;
- ``transport.py``: asyncio TCP links;
- ``membership.py``: static members, heartbeats, failure detection;
- ``placement.py``: rendezvous hashing (owner, primary, backup);
- ``table.py``: one member's versioned copy of the keys;
- ``node.py``: the member itself (ownership, acknowledged pushes, state transfer);
- ``store.py``: the ``Store``/``AsyncStore`` faces; ``replicated.py`` (Tomcat
  DeltaManager) and ``backup.py`` (Tomcat BackupManager) choose how many copies.
"""

from sessionshare.replication.backup import AsyncBackupStore, BackupStore
from sessionshare.replication.membership import MemberAddress, parse_members
from sessionshare.replication.replicated import AsyncReplicatedStore, ReplicatedStore

__all__ = [
    "AsyncBackupStore",
    "AsyncReplicatedStore",
    "BackupStore",
    "MemberAddress",
    "ReplicatedStore",
    "parse_members",
]
