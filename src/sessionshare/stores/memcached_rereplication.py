"""Give every session its second copy again after a memcached node comes back.

memcached-session-manager leaves sessions with a single copy after a node failure until
each is next written (its issue #300), so a second failure loses them. Here, when a node
returns (the health prober's ``on_return``), this runs in the prober's thread, and again
at each probe round until a pass finishes (a node to list did not answer, or the time
budget ran out: ``node_returned`` says ``False``):

1. The returned node's own sessionshare keys are dropped: while it was down, sessions
   moved and changed elsewhere, so anything it still holds (it was only unreachable, not
   restarted) may be stale, and a stale backup must never be served after a later failure.
2. Every available node is listed with ``lru_crawler metadump hash`` (``all`` before
   memcached 1.6.10), keeping only this app's keys (``key_prefix``) and backups
   (``bak:<primary>:<key>``).
3. A backup whose primary is up but lacks the session restores the primary (``add``).
4. A primary whose backup is missing at its current backup node (the next available
   node, which is the returned node again for its predecessor's sessions) gets one.
5. Backups sitting where placement no longer puts them are deleted once a correct copy
   exists, so that a later failover cannot read them.
6. Steps 2-5 repeat until a listing finds nothing left to do (at most ``PLANS`` times):
   a listing is no snapshot, and a key it left out would keep a single copy.

Copies are made with ``add`` (``ms … ME``): a request that writes the session meanwhile
wins, never the older copy. The work is bounded: at most ``max_keys`` keys per node and
``time_budget`` seconds, in chunks of ``chunk`` keys per round trip.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote

from sessionshare.stores.memcached_protocol import meta_delete, meta_get, meta_set
from sessionshare.stores.node_list import NodeSpec

if TYPE_CHECKING:
    from sessionshare.stores.memcached import MemcachedCluster

__all__ = ["Rereplicator", "metadump"]

#: plans (list, copy) per pass at most: the second normally finds nothing left to do.
PLANS = 3

log = logging.getLogger("sessionshare.memcached")


def metadump(spec: NodeSpec, *, timeout: float, max_keys: int) -> list[str] | None:
    """All live keys of one memcached, or ``None`` on error.

    ``lru_crawler metadump hash`` (memcached >= 1.6.10) walks the hash table; ``all``
    walks the LRUs, where the server moves keys meanwhile and a listing can leave one out
    (seen in CI: 11 of 12 sessions). ``all`` is the fallback for older servers. memcached
    refuses to pipeline anything with metadump, so it gets its own connection.
    """
    for mode in (b"hash", b"all"):
        data = _metadump(spec, mode, timeout=timeout)
        if data is None:
            return None
        if not data.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
            break
    else:
        return None
    keys = []
    for line in bytes(data).split(b"\n"):
        if line.startswith(b"key="):
            keys.append(unquote(line.split(b" ", 1)[0][4:].decode("latin-1")))
            if len(keys) >= max_keys:
                break
    return keys


def _metadump(spec: NodeSpec, mode: bytes, *, timeout: float) -> bytearray | None:
    """The raw answer to ``lru_crawler metadump <mode>`` (an error line included);
    ``None`` if the server could not be read or stayed busy."""
    try:
        with socket.create_connection((spec.host, spec.port), timeout=timeout) as sock:
            for _ in range(20):  # "BUSY": another crawl is running; wait briefly
                sock.sendall(b"lru_crawler metadump " + mode + b"\r\n")
                data = bytearray()
                while not (data.endswith(b"END\r\n") or data.startswith(b"BUSY")):
                    error = data.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR"))
                    if error and data.endswith(b"\r\n"):  # one line: an unknown mode, say
                        return data
                    chunk = sock.recv(65536)
                    if not chunk:
                        return None
                    data += chunk
                if not data.startswith(b"BUSY"):
                    return data
                time.sleep(0.05)
    except OSError:
        return None
    return None


class Rereplicator:
    """Converges copies to the placement rule after a node returns (see module doc)."""

    def __init__(
        self,
        cluster: MemcachedCluster,
        *,
        key_prefix: str,
        max_keys: int = 200_000,
        time_budget: float = 30.0,
        chunk: int = 100,
    ) -> None:
        self.cluster = cluster
        self.prefix = f"{key_prefix}:"
        self.max_keys = max_keys
        self.time_budget = time_budget
        self.chunk = chunk
        #: copies made (restored primaries + new backups), for stats() and tests.
        self.copied = 0
        self.runs = 0

    def _ours(self, key: str) -> bool:
        return key.startswith(self.prefix) and self.cluster.replicated(key)

    def _dump(self, node: str) -> set[str] | None:
        spec = next(s for s in self.cluster.specs if s.id == node)
        keys = metadump(spec, timeout=self.cluster.io.timeout * 5, max_keys=self.max_keys)
        return None if keys is None else set(keys)

    def node_returned(self, node: str) -> bool:
        """Called by the health prober (its thread) when ``node`` is reachable again;
        whether the pass finished (else the prober calls again at its next round)."""
        started = time.monotonic()
        self.runs += 1
        returned = self._dump(node)
        if returned is None:
            log.warning("re-replication after %s: its keys could not be listed; retrying", node)
            return False
        stale = [k for k in returned if self._ours(k) or self._ours(k.split(":", 2)[-1])]
        self._in_chunks(node, [meta_delete(k) for k in stale])
        # A listing is no snapshot: a key the server moves meanwhile can be left out, and
        # the copy it needed with it. So plan, copy, and list again until a plan finds
        # nothing left to copy (the returned node is known empty the first time).
        copied = dropped = 0
        for attempt in range(PLANS):
            dumps, complete = self._dumps(node, {node: set()} if attempt == 0 else {})
            copies, deletes = self._plan(dumps)
            if not copies and not deletes:
                log.info(
                    "re-replication after %s came back: %d copies made, %d misplaced backups "
                    "dropped in %.2fs",
                    node,
                    copied,
                    dropped,
                    time.monotonic() - started,
                )
                return complete  # a node that could not be listed: again next round
            # restores first: a primary restored from a misplaced backup then gets its backup
            for source, key, target, to_key in copies:
                if time.monotonic() - started > self.time_budget:
                    log.warning("re-replication after %s stopped at its time budget", node)
                    return False
                self._copy(source, key, target, to_key)
                if not to_key.startswith("bak:"):
                    backup = self.cluster.backup_of(target, set())
                    if backup is not None:
                        self._copy(target, to_key, backup, f"bak:{target}:{to_key}")
            for holder, key in deletes:
                self.cluster.drive(_single({holder: [meta_delete(key)]}))
            copied, dropped = copied + len(copies), dropped + len(deletes)
        log.warning("re-replication after %s: copies still missing after %d plans", node, PLANS)
        return False

    def _dumps(self, node: str, known: dict[str, set[str]]) -> tuple[dict[str, set[str]], bool]:
        """The keys of every available node (``known`` ones as given), and whether every
        one could be listed (the others are left out of this pass's plans)."""
        dumps, complete = dict(known), True
        for other in self.cluster.order:
            if other in dumps or not self.cluster.health.available(other):
                continue
            keys = self._dump(other)
            if keys is None:
                log.warning(
                    "re-replication after %s: the keys of %s could not be listed", node, other
                )
                complete = False
            else:
                dumps[other] = keys
        return dumps, complete

    def _plan(
        self, dumps: dict[str, set[str]]
    ) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str]]]:
        """What to copy (from node, from key, to node, to key) and which misplaced
        backups to delete (node, key), for the copies to follow the placement rule."""
        copies: list[tuple[str, str, str, str]] = []
        deletes: list[tuple[str, str]] = []
        for holder, keys in dumps.items():
            for key in keys:
                if key.startswith("bak:"):
                    _, primary, real = key.split(":", 2)
                    if primary not in dumps or not self._ours(real):
                        continue  # the primary is down: this backup is the copy to keep
                    if real not in dumps[primary]:
                        copies.append((holder, key, primary, real))
                        dumps[primary].add(real)
                    if self.cluster.backup_of(primary, set()) != holder:
                        deletes.append((holder, key))
                elif self._ours(key):
                    backup = self.cluster.backup_of(holder, set())
                    bak = f"bak:{holder}:{key}"
                    if backup is not None and backup in dumps and bak not in dumps[backup]:
                        copies.append((holder, key, backup, bak))
        return copies, deletes

    def _copy(self, source: str, key: str, target: str, to_key: str) -> None:
        answer = self.cluster.drive(_single({source: [meta_get(key, cas=False, ttl_left=True)]}))
        replies = answer.get(source)
        if not isinstance(replies, list) or not replies[0].hit:
            return
        reply = replies[0]
        ttl = self.cluster.left(reply)
        self.cluster.drive(
            _single({target: [meta_set(to_key, reply.value or b"", ttl=ttl, add=True)]})
        )
        self.copied += 1

    def _in_chunks(self, node: str, commands: list[bytes]) -> None:
        for start in range(0, len(commands), self.chunk):
            self.cluster.drive(_single({node: commands[start : start + self.chunk]}))


def _single(request: dict[str, list[bytes]]):  # type: ignore[no-untyped-def]
    """A one-step plan that returns the raw answer of one exchange."""
    answer = yield request
    return answer
