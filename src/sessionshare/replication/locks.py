"""The session locks a member holds as the owner of their sessions.

A lock is the session manager's ``Add`` of a lock key (SPEC §3). With the peer
stores it lives on the owner of its session alone: it is never copied to other
members (``node.py`` says why), it needs no version and no tombstone. So it is kept
here, a key, the lock holder's token and an expiry, rather than in the ``Table`` of
replicated keys, where each lock cost a versioned entry with a random nonce twice
per locked request, and counted as a session while it was held.

Only the member's event loop uses it (WSGI threads read sessions from the
``Table``, never locks), so it needs no lock of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["OwnerLocks"]


class OwnerLocks:
    """Lock key -> (holder token, expiry): ``add`` is the atomic test-and-set."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._held: dict[str, tuple[bytes, float]] = {}
        self._clock = clock

    def __len__(self) -> int:
        return len(self._held)

    def add(self, key: str, holder: bytes, ttl: float) -> bool:
        """Take ``key`` for ``holder`` unless someone holds it; whether it was taken."""
        now = self._clock()
        held = self._held.get(key)
        if held is not None and held[1] > now:
            return False
        self._held[key] = (holder, now + ttl)
        return True

    def release(self, key: str) -> bool:
        """Let ``key`` go; whether it was a lock held here (else it is some other key)."""
        return self._held.pop(key, None) is not None

    def touch(self, key: str, ttl: float) -> bool:
        """Extend a held lock (renewal while its request runs); whether it was held."""
        held = self._held.get(key)
        if held is None:
            return False
        now = self._clock()
        if held[1] <= now:
            del self._held[key]
            return False
        self._held[key] = (held[0], now + ttl)
        return True

    def sweep(self) -> int:
        """Forget expired locks (their requests died with another member); count them."""
        now = self._clock()
        expired = [key for key, (_, expires_at) in self._held.items() if expires_at <= now]
        for key in expired:
            del self._held[key]
        return len(expired)
