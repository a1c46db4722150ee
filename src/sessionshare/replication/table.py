"""One member's copy of the replicated keys: versions, TTLs, tombstones, a bound.

No I/O: the member (``node.py``) decides *who* may change what; this table only
keeps each key's newest version and answers the store operations against it.

Versions are ``(seq, nonce)`` pairs. ``seq`` goes up by one with every change of a
key, whichever member makes it, so any two copies of a key can be compared after a
failover or a state transfer (newer ``seq`` wins; ``nonce``, random per change,
breaks the tie two owners could create during a partition). Because the pair is
the same on every member, ``write(version=...)`` is a real conditional write
cluster-wide once the owner checks it.

A deleted key leaves a *tombstone* (its version, no value) for ``TOMBSTONE_TTL``
so that a late or replayed copy of the old value can never resurrect it.

Expired keys are reclaimed lazily when read and by ``sweep``, which walks a bounded
number of keys per call so the lock is never held for long.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["TOMBSTONE_TTL", "Entry", "Table", "TableFull", "Version"]

Version = tuple[int, int]

#: how long a deleted key's version is remembered (seconds): far longer than any
#: replication delay, short enough to cost nothing.
TOMBSTONE_TTL = 120.0
#: tombstones kept at most; the oldest go first (they only guard against stragglers).
MAX_TOMBSTONES = 100_000


class TableFull(Exception):
    """A new session was refused: this member holds ``max_entries`` sessions already."""


@dataclass(slots=True)
class Entry:
    """One key's current copy; ``value is None`` marks a tombstone."""

    value: bytes | None
    seq: int
    nonce: int
    expires_at: float
    #: the expiry the other holders know of; a local read that refreshes the TTL well
    #: past it is worth telling them (``node.py``), a small refresh is not.
    shared_until: float = 0.0

    @property
    def version(self) -> Version:
        return (self.seq, self.nonce)


class Table:
    """Thread-safe: WSGI request threads read it directly, the member's loop writes it."""

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._tombstones: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock
        self._random = random.Random()
        self.max_entries = max_entries
        self.rejected = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    # -- helpers (called with the lock held) -----------------------------------------

    def _live(self, key: str, now: float) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self._entries[key]
            self.expired += 1
            return None
        return entry

    def _put(self, key: str, value: bytes, ttl: float, now: float, last: Entry | None) -> Entry:
        """A new version of ``key`` after ``last`` (its live entry, or ``None``)."""
        if last is None:
            last = self._tombstones.pop(key, None)
        seq = 1 if last is None else last.seq + 1
        entry = Entry(value, seq, self._random.getrandbits(62), now + ttl, now + ttl)
        self._entries[key] = entry
        return entry

    def _bury(self, key: str, seq: int, nonce: int, now: float) -> Entry:
        tomb = Entry(None, seq, nonce, now + TOMBSTONE_TTL, now + TOMBSTONE_TTL)
        self._entries.pop(key, None)
        self._tombstones[key] = tomb
        self._tombstones.move_to_end(key)
        while len(self._tombstones) > MAX_TOMBSTONES:
            self._tombstones.popitem(last=False)
        return tomb

    # -- the owner's operations ----------------------------------------------------------

    def get(self, key: str, touch: float | None = None) -> Entry | None:
        now = self._clock()
        with self._lock:
            entry = self._live(key, now)
            if entry is not None and touch is not None:
                entry.expires_at = max(entry.expires_at, now + touch)
            return entry

    def write(
        self, key: str, value: bytes, ttl: float, version: Version | None, *, bounded: bool = True
    ) -> Entry | None:
        """Store if the current version is ``version`` (``None``: only if absent).

        Raises ``TableFull`` for a new key when ``bounded`` and the table is full.
        """
        now = self._clock()
        with self._lock:
            current = self._live(key, now)
            if current is None:
                if version is not None:
                    return None
                if bounded and len(self._entries) >= self.max_entries:
                    self.rejected += 1
                    raise TableFull(f"{len(self._entries)} sessions held (max_sessions)")
            elif version is None or (current.seq, current.nonce) != version:
                return None
            return self._put(key, value, ttl, now, current)

    def delete(self, key: str) -> Entry | None:
        """Replace ``key`` by a tombstone; the tombstone, or ``None`` if it was absent."""
        now = self._clock()
        with self._lock:
            current = self._live(key, now)
            if current is None:
                return None
            return self._bury(key, current.seq + 1, self._random.getrandbits(62), now)

    def touch(self, key: str, ttl: float) -> Entry | None:
        now = self._clock()
        with self._lock:
            entry = self._live(key, now)
            if entry is not None:
                entry.expires_at = entry.shared_until = now + ttl
            return entry

    # -- copies from other members ---------------------------------------------------------

    def merge(
        self,
        key: str,
        value: bytes | None,
        seq: int,
        nonce: int,
        ttl: float,
        *,
        force: bool = False,
    ) -> bool:
        """Apply a copy sent by another member if it is newer than ours.

        The same version again only moves the expiry forward (a replicated TTL
        refresh). ``force`` (the key's owner settling a disagreement) replaces our
        copy whatever its version; ``seq == 0`` then means "the owner has none".
        Returns whether anything changed.
        """
        now = self._clock()
        with self._lock:
            current = self._entries.get(key)
            if current is None:
                current = self._tombstones.get(key)
            if force and seq == 0:
                return self._entries.pop(key, None) is not None
            if current is not None and not force and seq <= current.seq:
                if seq < current.seq or nonce < current.nonce:
                    return False
                if nonce == current.nonce:
                    if value is None or current.value is None or now + ttl <= current.expires_at:
                        return False
                    current.expires_at = current.shared_until = now + ttl
                    return True
            if value is None:
                self._bury(key, seq, nonce, now)
            else:
                if current is not None and current.value is None:
                    del self._tombstones[key]
                self._entries[key] = Entry(value, seq, nonce, now + ttl, now + ttl)
            return True

    def current(self, key: str) -> Entry | None:
        """The live entry or tombstone of ``key`` (what its owner would push)."""
        now = self._clock()
        with self._lock:
            entry = self._live(key, now) or self._tombstones.get(key)
            if entry is None or entry.expires_at <= now:
                return None
            return entry

    def forget(self, key: str, seq: int, nonce: int) -> bool:
        """Remove ``key``'s copy (live or tombstone) if it is still version ``(seq, nonce)``.

        Undoes a change this member made as owner after the others had dropped it: no
        client was told it succeeded, and the others' copy, pulled by the re-sync that
        follows, is the one to keep. A copy merged meanwhile is not ours: it stays.
        """
        with self._lock:
            for copies in (self._entries, self._tombstones):
                entry = copies.get(key)
                if entry is not None and (entry.seq, entry.nonce) == (seq, nonce):
                    del copies[key]
                    return True
        return False

    def drop(self, key: str) -> None:
        """Forget a copy this member no longer has to keep (backup mode rebalancing)."""
        with self._lock:
            self._entries.pop(key, None)

    def snapshot(self) -> list[tuple[str, Entry]]:
        """Copies of every live entry and tombstone, for state transfer."""
        now = self._clock()
        with self._lock:
            items = [(k, e) for k, e in self._entries.items() if e.expires_at > now]
            items += [(k, e) for k, e in self._tombstones.items() if e.expires_at > now]
        return [(k, Entry(e.value, e.seq, e.nonce, e.expires_at, e.shared_until)) for k, e in items]

    def remaining(self, entry: Entry) -> float:
        """Seconds ``entry`` has left: TTLs travel relative, as member clocks differ."""
        return max(0.0, entry.expires_at - self._clock())

    def sweep(self, limit: int = 2000) -> int:
        """Reclaim expired keys among the next ``limit`` (a rotating walk); count them."""
        now = self._clock()
        reclaimed = 0
        with self._lock:
            for _ in range(min(limit, len(self._entries))):
                key, entry = next(iter(self._entries.items()))
                if entry.expires_at <= now:
                    del self._entries[key]
                    reclaimed += 1
                else:
                    self._entries.move_to_end(key)
            while self._tombstones:
                key, tomb = next(iter(self._tombstones.items()))
                if tomb.expires_at > now:
                    break
                del self._tombstones[key]
            self.expired += reclaimed
        return reclaimed

    def keys(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._entries))
