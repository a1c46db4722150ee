"""Give every session its second copy again after a memcached node comes back.

memcached-session-manager leaves sessions with a single copy after a node failure until
each is next written (its issue #300), so a second failure loses them. Here, when a node
returns (the health prober's ``on_return``), this runs in the prober's thread, and again
at each probe round until a pass finishes (a node to list did not answer, or the time
budget ran out: ``node_returned`` says ``False``):

1. The returned node's own sessionshare keys are dropped: while it was down, sessions
   moved and changed elsewhere, so anything it still holds (it was only unreachable, not
   restarted) may be stale, and a stale backup must never be served after a later failure.
2. Every available node is listed with ``lru_crawler metadump all`` (memcached >= 1.5),
   keeping only this app's keys (``key_prefix``) and backups (``bak:<primary>:<key>``).
3. A backup whose primary is up but lacks the session restores the primary (``add``).
4. A primary whose backup is missing at its current backup node (the next available
   node, which is the returned node again for its predecessor's sessions) gets one.
5. Backups sitting where placement no longer puts them are deleted once a correct copy
   exists, so that a later failover cannot read them.

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

log = logging.getLogger("sessionshare.memcached")


def metadump(spec: NodeSpec, *, timeout: float, max_keys: int) -> list[str] | None:
    """All live keys of one memcached (``lru_crawler metadump all``), or ``None`` on error.

    memcached refuses to pipeline anything with metadump, so it gets its own connection.
    """
    try:
        with socket.create_connection((spec.host, spec.port), timeout=timeout) as sock:
            for _ in range(20):  # "BUSY": another crawl is running; wait briefly
                sock.sendall(b"lru_crawler metadump all\r\n")
                data = bytearray()
                while not (data.endswith(b"END\r\n") or data.startswith(b"BUSY")):
                    if data.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
                        return None
                    chunk = sock.recv(65536)
                    if not chunk:
                        return None
                    data += chunk
                if not data.startswith(b"BUSY"):
                    break
                time.sleep(0.05)
            else:
                return None
    except OSError:
        return None
    keys = []
    for line in bytes(data).split(b"\n"):
        if line.startswith(b"key="):
            keys.append(unquote(line.split(b" ", 1)[0][4:].decode("latin-1")))
            if len(keys) >= max_keys:
                break
    return keys


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
        finished = True
        stale = [k for k in returned if self._ours(k) or self._ours(k.split(":", 2)[-1])]
        self._in_chunks(node, [meta_delete(k) for k in stale])
        dumps: dict[str, set[str]] = {node: set()}
        for other in self.cluster.order:
            if other != node and self.cluster.health.available(other):
                keys = self._dump(other)
                if keys is None:
                    log.warning(
                        "re-replication after %s: the keys of %s could not be listed; retrying",
                        node,
                        other,
                    )
                    finished = False
                else:
                    dumps[other] = keys
        copies: list[tuple[str, str, str, str]] = []  # (from node, from key, to node, to key)
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
        # restores first: a primary restored from a misplaced backup then gets its backup
        for source, key, target, to_key in copies:
            if time.monotonic() - started > self.time_budget:
                log.warning("re-replication after %s stopped at its time budget; retrying", node)
                return False
            self._copy(source, key, target, to_key)
            if not to_key.startswith("bak:"):
                backup = self.cluster.backup_of(target, set())
                if backup is not None:
                    self._copy(target, to_key, backup, f"bak:{target}:{to_key}")
        for holder, key in deletes:
            self.cluster.drive(_single({holder: [meta_delete(key)]}))
        log.info(
            "re-replication after %s came back: %d copies made, %d misplaced backups dropped "
            "in %.2fs",
            node,
            self.copied,
            len(deletes),
            time.monotonic() - started,
        )
        return finished

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
