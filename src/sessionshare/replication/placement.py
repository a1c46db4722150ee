"""Where a session lives among the members: rendezvous (highest-random-weight) hashing.

Every member ranks the live members for a session token the same way, with no
coordination and no table to keep in sync: ``rank(token, members)[0]`` is the
session's *owner* (it orders conditional writes and holds the session lock),
``[1]`` its backup in ``backup`` mode. When a member leaves, only the sessions it
ranked first or second move, and each moves to the member that was next in line
(already its backup) — the property BackupManager gets from its backup-node
list, without a map of session -> node to replicate.

Keys are ranked by their *token* (the part after the last ``:``), so a session,
its lock and its quarantine copy always share an owner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["rank", "token_of"]


def token_of(key: str) -> str:
    """The session token inside a store key (``prefix:s:<token>`` -> ``<token>``)."""
    return key.rpartition(":")[2]


def _score(member: str, token: str) -> int:
    digest = hashlib.blake2b(f"{member}\0{token}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(token: str, members: Iterable[str]) -> list[str]:
    """``members`` from most to least preferred for ``token`` (same on every member)."""
    return sorted(members, key=lambda member: (_score(member, token), member), reverse=True)
