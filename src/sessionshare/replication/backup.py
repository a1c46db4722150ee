"""``store = "backup"``: each session on a primary and one backup (Tomcat BackupManager).

The primary and backup of a session are the first two members of its rendezvous
ranking among ready members (``placement.py``): every member computes the same
pair, so "where it lives" is known everywhere without a replicated map, and
other members fetch it from the primary on demand. When the primary dies the
backup is first in line and promotes itself; the member ranked next becomes the
new backup and receives a copy at once (``ReplicationNode._realign``). When the
backup dies, the primary hands a copy to the new second in line the same way.

Memory per member is about 2/N of the sessions instead of all of them; the price
is a round trip for reads on members that hold neither copy.
"""

from __future__ import annotations

from sessionshare.replication.store import AsyncPeerStore, PeerStore

__all__ = ["AsyncBackupStore", "BackupStore"]

#: a primary and one backup, as BackupManager keeps them.
COPIES = 2


class BackupStore(PeerStore):
    """Primary + backup replication, blocking face (WSGI)."""

    kind = "backup"
    copies = COPIES


class AsyncBackupStore(AsyncPeerStore):
    """Primary + backup replication, async face (ASGI)."""

    kind = "backup"
    copies = COPIES
