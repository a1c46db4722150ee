"""Sticky mode's local side: the live sessions an app node keeps, and how its workers agree.

In sticky mode (MSM ``sticky=true``) the balancer sends a session's requests to the same
app node, which keeps the live session in memory and serves reads without asking the
store (0 round trips); the store holds a *backup*, written after the response.

One app node may run several worker processes (``gunicorn -w 2``) and the balancer cannot
tell them apart, so each worker's local copy could be stale: worker A changes the session,
worker B still holds the previous version. ``GenerationTable`` is how they agree, through
a small table in shared memory (one per app node) with one counter per session slot:

- a worker that changes a session makes the slot's counter odd ("backup pending"), serves
  its response, writes the backup, then makes it even again ("settled");
- a worker serves its local copy only if the counter still equals the value it recorded
  with that copy; an odd counter written by someone else means "wait for that backup",
  then load from the store. So no worker ever serves a stale local copy.

Slots are shared by hash: two sessions in one slot only cause extra store reads, never a
stale one. A torn or racing read can only make a worker reload or wait, never serve stale.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import tempfile
import threading
import zlib
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

from sessionshare.core.envelope import Envelope

__all__ = ["GenerationTable", "LocalCopy", "LocalGenerations", "SharedGenerations", "StickyCache"]

#: slots in a shared table: 16 384 x 8 bytes = 128 KiB per app node.
SLOTS = 16384
_SLOT = struct.Struct("<Q")


class GenerationTable:
    """Per-session-slot counters shared by the worker processes of one app node."""

    def read(self, token: str) -> int:
        raise NotImplementedError

    def begin(self, token: str) -> int:
        """Mark a local change whose backup is pending: the counter becomes odd."""
        raise NotImplementedError

    def settle(self, token: str, pending: int) -> int:
        """The backup of ``pending`` is stored: make the counter even, unless another
        change came meanwhile. Returns the counter as it is now."""
        raise NotImplementedError


def _next_odd(value: int) -> int:
    return value + 1 if value % 2 == 0 else value + 2


class LocalGenerations(GenerationTable):
    """The table for a single process (tests, uvicorn with one worker)."""

    def __init__(self) -> None:
        self._slots: dict[int, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _slot(token: str) -> int:
        return zlib.crc32(token.encode()) % SLOTS

    def read(self, token: str) -> int:
        return self._slots.get(self._slot(token), 0)

    def begin(self, token: str) -> int:
        with self._lock:
            slot = self._slot(token)
            self._slots[slot] = _next_odd(self._slots.get(slot, 0))
            return self._slots[slot]

    def settle(self, token: str, pending: int) -> int:
        with self._lock:
            slot = self._slot(token)
            if self._slots.get(slot, 0) == pending:
                self._slots[slot] = pending + 1
            return self._slots.get(slot, 0)


class SharedGenerations(GenerationTable):
    """The table in a memory-mapped file, shared by every worker of one app node.

    The file is named after the parent process (gunicorn's master, uvicorn's supervisor),
    the route and the key prefix: exactly the processes of one app node share it. Updates
    hold an ``flock``; reads do not (see the module doc for why that is safe).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SLOTS * _SLOT.size:
                os.ftruncate(fd, SLOTS * _SLOT.size)
            self._map = mmap.mmap(fd, SLOTS * _SLOT.size)
        finally:
            os.close(fd)
        self._lock_fd = os.open(path, os.O_RDWR)
        self._thread_lock = threading.Lock()

    @classmethod
    def for_node(cls, route: str | None, key_prefix: str) -> SharedGenerations:
        name = f"sessionshare-{os.getuid()}-{os.getppid()}-{route or 'node'}-{key_prefix}.gen"
        return cls(Path(tempfile.gettempdir()) / name.replace(":", "_"))

    @staticmethod
    def _offset(token: str) -> int:
        return (zlib.crc32(token.encode()) % SLOTS) * _SLOT.size

    def read(self, token: str) -> int:
        return int(_SLOT.unpack_from(self._map, self._offset(token))[0])

    def _update(self, token: str, pending: int | None) -> int:
        offset = self._offset(token)
        with self._thread_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                value = int(_SLOT.unpack_from(self._map, offset)[0])
                if pending is None:
                    value = _next_odd(value)
                elif value == pending:
                    value = pending + 1
                _SLOT.pack_into(self._map, offset, value)
                return value
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def begin(self, token: str) -> int:
        return self._update(token, None)

    def settle(self, token: str, pending: int) -> int:
        return self._update(token, pending)


@dataclass(slots=True)
class LocalCopy:
    """A live session held by this process, with every attribute (filtered or not)."""

    envelope: Envelope
    #: version and node of the store's backup (``None``: not backed up yet).
    version: Hashable | None
    node: str | None
    #: the generation this copy is current for (odd: our own backup is pending).
    generation: int
    #: wall-clock time the backup's TTL was last refreshed.
    refreshed_at: float
    #: a change whose backup failed: retried on the next request, even if unmodified.
    dirty: bool = False


class StickyCache:
    """Bounded LRU of local copies, plus the generation table that validates them."""

    def __init__(self, table: GenerationTable, *, capacity: int = 100_000) -> None:
        self.table = table
        self.capacity = capacity
        self._copies: OrderedDict[str, LocalCopy] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._copies)

    def current(self, token: str) -> tuple[LocalCopy | None, int]:
        """The local copy if it is still current, and the table's generation."""
        generation = self.table.read(token)
        with self._lock:
            copy = self._copies.get(token)
            if copy is None or copy.generation != generation:
                return None, generation
            self._copies.move_to_end(token)
            return copy, generation

    def put(self, token: str, copy: LocalCopy) -> None:
        with self._lock:
            self._copies[token] = copy
            self._copies.move_to_end(token)
            while len(self._copies) > self.capacity:
                self._copies.popitem(last=False)

    def get(self, token: str) -> LocalCopy | None:
        with self._lock:
            return self._copies.get(token)

    def drop(self, token: str) -> None:
        """Forget a session here and make every other worker's copy stale too."""
        with self._lock:
            self._copies.pop(token, None)
        self.table.settle(token, self.table.begin(token))
