"""The ``memcached`` store: MSM's placement, backup and failover on memcached nodes.

Layout (memcached-session-manager's, SPEC §4). Nodes are an ordered list ``n1 n2 n3``.
A session ``<token>-n1`` lives on its *primary* ``n1`` under its key, and (non-sticky)
a *backup* copy lives on the next available node of the list under ``bak:n1:<key>``
(MSM's ``bak:`` keys; the primary's id in the backup key lets re-replication find the
primary of every backup). Locks are single copies on the primary.

- **read**: the primary, refreshing the TTL (``mg … T``) and, in the same round trip,
  the backup's TTL, unless this process wrote or refreshed that backup less than
  ``ttl * backup_fresh`` ago (``FreshBackups``): then a read is one message to one node.
  If the primary is down, the backup is read and the session
  *relocates*: it is stored on the backup node as its new primary, with a new backup
  after it, and the answer's ``node`` differs from the id's, so the protocol changes the
  id suffix and re-sends the cookie (MSM relocation). If the primary is up but lost the
  session (it restarted), the backup restores it.
- **write**: by version (``ms … C<cas>``; ``version=None`` adds), to the primary and the
  backup in the same round trip. A failed conditional write repairs the backup from the
  primary before answering "conflict", so a losing write never lingers as a backup.
- **failover search** walks the node list once from the id's node: bounded, never loops
  (MSM issue #404). ``failover_nodes`` join the walk only when every other node is down.
- **batch**: the operations' commands are merged into one exchange (one pipelined
  ``send`` per node, all nodes in parallel): lock + read is one round trip, write +
  backup + unlock another. Follow-up steps (failover, repair) take more, only then.

The store logic is written once, as generators that yield exchanges (the same sans-IO
shape as ``core/manager.py``); ``MemcachedStore`` answers them with blocking sockets,
``AsyncMemcachedStore`` with asyncio streams. The async store is native rather than
``BlockingStoreAdapter(in_thread=True)``: a thread hop per operation costs more than
the memcached round trip itself (see docs/memcached.md for the measurement).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence
from contextlib import suppress
from dataclasses import dataclass, fields
from typing import Any

from sessionshare.config import SessionConfig
from sessionshare.core.manager import lock_key_prefix
from sessionshare.core.operations import Add, Delete, Get, Record, Stored, Touch, Write
from sessionshare.errors import StoreError, StoreUnavailable
from sessionshare.stores.base import AsyncOperationStore, OperationStore, StoreOp
from sessionshare.stores.memcached_health import NodeHealth, NodeState
from sessionshare.stores.memcached_io import (
    Answer,
    AsyncConnections,
    Request,
    SyncConnections,
)
from sessionshare.stores.memcached_protocol import (
    Reply,
    expiry,
    meta_delete,
    meta_get,
    meta_set,
)
from sessionshare.stores.memcached_rereplication import Rereplicator
from sessionshare.stores.node_list import NodeSpec, parse_failover_nodes, parse_nodes

__all__ = [
    "AsyncMemcachedStore",
    "FreshBackups",
    "MemcachedCluster",
    "MemcachedStore",
    "NodeState",
    "backup_key",
    "cluster_from_config",
]

log = logging.getLogger("sessionshare.memcached")

#: A plan: yields exchanges, receives their answers, returns the operation's answer.
Plan = Generator[Request, Answer, Any]


def backup_key(primary: str, key: str) -> str:
    """Where the backup of ``key`` (whose primary is node ``primary``) is stored."""
    return f"bak:{primary}:{key}"


@dataclass(slots=True)
class NodeCounters:
    """Per-node counters for the dashboard (SPEC: gets, sets, misses, relocations …)."""

    gets: int = 0
    misses: int = 0
    sets: int = 0
    relocations: int = 0
    restores: int = 0
    conflicts: int = 0
    lock_waits: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FreshBackups:
    """Backups this process knows are fresh, so that a read need not refresh them.

    Every write stores the backup with the session's full TTL, and a read refreshes the
    primary's TTL; the backup only needs its TTL refreshed before it could expire first.
    So a write, or a backup TTL refresh, by this process records "the backup of ``key``
    (primary ``p``, backup node ``b``) is fresh until ``sent + ttl * fraction``", with
    ``sent`` taken before the command went out (memcached keeps an item at least its TTL:
    ``expiry`` rounds up and adds a second). A read refreshes the backup only when the
    record is missing, past due or for another placement (relocation, a changed backup
    node), and then records it again: each process refreshes a session's backup at most
    once per ``ttl * fraction`` while it reads it, which keeps the backup alive as long
    as any process reads the session, up to ``ttl * fraction`` before the primary expires.

    Bounded (``max_keys``, the least recently recorded dropped first). Thread-safe without
    a lock (so nothing can be inherited locked by a forked worker): every change is one
    ``OrderedDict`` call, atomic under the GIL. Restores, relocations, conflicts and
    deletes forget the key's record; a node coming back (re-replication drops and
    rewrites copies) forgets them all.
    """

    def __init__(
        self,
        *,
        fraction: float = 0.125,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fraction = fraction
        self.max_keys = max_keys
        self.clock = clock
        self._until: OrderedDict[str, tuple[str, str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def fresh(self, key: str, primary: str, backup: str) -> bool:
        entry = self._until.get(key)
        return (
            entry is not None
            and entry[0] == primary
            and entry[1] == backup
            and self.clock() < entry[2]
        )

    def refreshed(self, key: str, primary: str, backup: str, sent: float, ttl: float) -> None:
        """The backup was stored or touched with ``ttl`` seconds by a request sent at ``sent``."""
        self._until[key] = (primary, backup, sent + ttl * self.fraction)
        self._until.move_to_end(key)
        if len(self._until) > self.max_keys:
            with suppress(KeyError):  # emptied meanwhile by another thread
                self._until.popitem(last=False)

    def forget(self, key: str) -> None:
        self._until.pop(key, None)

    def clear(self) -> None:
        self._until.clear()


class MemcachedCluster:
    """Everything about the memcached store except I/O: placement, plans, health, counters.

    ``copies`` is 2 in non-sticky mode (primary + backup) and 1 in sticky mode, where the
    serving app node holds the live session and memcached holds its only backup (MSM).
    ``replicated(key)`` says which keys get a backup copy: sessions do, locks do not.
    """

    def __init__(
        self,
        nodes: list[NodeSpec],
        *,
        failover: Sequence[str] = (),
        copies: int = 2,
        operation_timeout: float = 1.0,
        replicated: Callable[[str], bool] = lambda key: True,
        key_prefix: str = "",
        wallclock: Callable[[], float] = time.time,
        probe_interval: float = 1.0,
        backup_fresh: float = 0.125,
    ) -> None:
        self.specs = nodes
        self.order = [spec.id for spec in nodes]
        self.failover = [node for node in self.order if node in set(failover)]
        self.regular = [node for node in self.order if node not in set(failover)]
        self.copies = copies
        self.replicated = replicated
        self.wallclock = wallclock
        self.counters = {node: NodeCounters() for node in self.order}
        #: backups known fresh: reads skip their TTL refresh (``backup_fresh`` * TTL).
        self.fresh = FreshBackups(fraction=backup_fresh)
        self.io = SyncConnections(nodes, timeout=operation_timeout, on_failure=self._on_failure)
        self.rereplicator = Rereplicator(self, key_prefix=key_prefix)
        self.health = NodeHealth(
            nodes,
            probe_timeout=operation_timeout,
            interval=probe_interval,
            on_return=self._node_returned if copies > 1 else None,
        )

    def __repr__(self) -> str:
        return f"<MemcachedCluster copies={self.copies} {self.health!r}>"

    def _node_returned(self, node: str) -> bool:
        """A node is back (or restarted): its copies are dropped and rewritten, so no
        backup is known fresh any more, before the pass or during it. Whether the pass
        finished (the prober repeats it until it does)."""
        self.fresh.clear()
        try:
            return self.rereplicator.node_returned(node)
        finally:
            self.fresh.clear()

    def _on_failure(self, node: str, *, definite: bool) -> None:
        self.counters[node].errors += 1
        self.health.report_failure(node, definite=definite)

    # -- placement (no I/O) ----------------------------------------------------------------

    def home(self, key: str) -> str:
        """The node a key without a node suffix belongs to (stable, health-independent)."""
        return self.regular[zlib.crc32(key.encode()) % len(self.regular)]

    def place(self, key: str) -> str:
        """Primary for a new session: spread over available regular nodes by key hash."""
        available = [n for n in self.regular if self.health.available(n)]
        if not available:
            available = [n for n in self.failover if self.health.available(n)] or self.regular
        return available[zlib.crc32(key.encode()) % len(available)]

    def _walk(self, start: str) -> list[str]:
        """Nodes in list order from ``start`` (wrapping), then failover nodes: each once."""
        if start in self.regular:
            i = self.regular.index(start)
            regular = self.regular[i:] + self.regular[:i]
        else:
            regular = list(self.regular)
        return (
            regular
            + [n for n in self.failover if n != start]
            + ([start] if start in self.failover else [])
        )

    def first_available(self, start: str, skip: set[str]) -> str | None:
        """The first usable node walking from ``start``; failover nodes only if no regular
        node is usable. Bounded: each node is looked at once (MSM issue #404)."""
        fallback = None
        for node in self._walk(start):
            if node in skip or not self.health.available(node):
                continue
            if node in self.regular:
                return node
            fallback = fallback or node
        return fallback

    def backup_of(self, primary: str, skip: set[str]) -> str | None:
        """The node holding ``primary``'s backups: the next usable node after it."""
        if self.copies < 2:
            return None
        backup = self.first_available(primary, skip | {primary})
        return backup

    def _node_of(self, node: str | None, key: str) -> str:
        return node if node in self.counters else self.home(key)

    def unavailable(self) -> StoreUnavailable:
        states = ", ".join(f"{n} {self.health.state[n].value}" for n in self.order)
        return StoreUnavailable(
            f"no memcached node can serve this session ({states}); retry shortly"
        )

    def _ttl(self, seconds: float) -> int:
        return expiry(seconds, self.wallclock())

    # -- plans: one per store operation ---------------------------------------------------

    def plan(self, op: StoreOp) -> Plan:
        if isinstance(op, Get):
            return self._get(op.key, self._node_of(op.node, op.key), op.touch)
        if isinstance(op, Write):
            return self._write(op)
        if isinstance(op, Add):
            return self._add(op)
        if isinstance(op, Delete):
            return self._delete(op.key, self._node_of(op.node, op.key))
        return self._touch(op)

    def _answer(self, answer: Answer, node: str) -> list[Reply] | None:
        """The node's replies, or ``None`` if talking to it failed (already reported)."""
        replies = answer[node]
        if isinstance(replies, StoreError):
            return None
        for reply in replies:
            if reply.code == b"ERROR":  # e.g. SERVER_ERROR object too large for cache
                raise StoreError(f"memcached {node}: {reply.message}")
        return replies

    def _get(self, key: str, node: str, touch: float | None) -> Plan:
        ttl = None if touch is None else self._ttl(touch)
        backed = self.copies > 1 and self.replicated(key)
        failed: set[str] = set()
        if self.health.available(node):
            backup = self.backup_of(node, failed) if backed else None
            request: Request = {node: [meta_get(key, touch=ttl)]}
            sent = self.fresh.clock()
            if (
                backup is not None and touch is not None and not self.fresh.fresh(key, node, backup)
            ):  # keep the backup alive with the primary (unless it is known fresh)
                request[backup] = [
                    meta_get(backup_key(node, key), value=False, cas=False, touch=ttl)
                ]
            answer = yield request
            if backup is not None and backup in answer:
                self._backup_answered(answer, backup, key, node, sent, touch)
            replies = self._answer(answer, node)
            if replies is not None:
                reply = replies[0]
                if reply.hit:
                    self.counters[node].gets += 1
                    return Record(reply.value or b"", reply.cas, node)
                self.counters[node].misses += 1
                self.fresh.forget(key)
                if backup is None:
                    return None
                if backup in answer:
                    checked = self._answer(answer, backup)
                    if checked is not None and not checked[0].hit:
                        return None  # no backup either: a plain miss, one round trip
                return (yield from self._restore(key, node, backup, ttl))
            failed.add(node)
            self.fresh.forget(key)
        if not backed:
            # Sticky mode keeps one copy: with its node gone the app node's copy is the
            # truth (the protocol writes it again, elsewhere). Locks are never read.
            if self.first_available(node, failed) is None:
                raise self.unavailable()
            return None
        return (yield from self._relocate(key, node, failed, ttl))

    def _backup_answered(
        self, answer: Answer, backup: str, key: str, primary: str, sent: float, ttl: float | None
    ) -> None:
        """Record the backup as fresh if its write or TTL refresh succeeded, else forget it."""
        replies = answer[backup]
        if ttl is not None and isinstance(replies, list) and replies and replies[0].hit:
            self.fresh.refreshed(key, primary, backup, sent, ttl)
        else:
            self.fresh.forget(key)

    def _restore(self, key: str, primary: str, backup: str, ttl: int | None) -> Plan:
        """The primary is up but lost the session (restart): copy it back from the backup."""
        answer = yield {backup: [meta_get(backup_key(primary, key), cas=False, ttl_left=True)]}
        replies = self._answer(answer, backup)
        if replies is None or not replies[0].hit:
            return None
        copy = replies[0]
        ttl = ttl if ttl is not None else self.left(copy)
        answer = yield {
            primary: [meta_set(key, copy.value or b"", ttl=ttl, add=True), meta_get(key)]
        }
        replies = self._answer(answer, primary)
        if replies is None or not replies[1].hit:
            return None
        self.counters[primary].restores += 1
        log.info("session key %s restored on %s from its backup on %s", key, primary, backup)
        return Record(replies[1].value or b"", replies[1].cas, primary)

    def left(self, reply: Reply) -> int:
        """The exptime that keeps a copy's remaining TTL (``-1``: none, so ``0``)."""
        left = reply.ttl_left
        if left is not None and left < 0:
            return 0
        return self._ttl(left or 1)

    def _relocate(self, key: str, dead: str, failed: set[str], ttl: int | None) -> Plan:
        """The primary ``dead`` is down: read its backup and make that node the primary."""
        self.fresh.forget(key)
        source = self.first_available(dead, failed | {dead})
        if source is None:
            raise self.unavailable()
        bak = backup_key(dead, key)
        # Another request may have relocated it already: then the key itself is there.
        answer = yield {source: [meta_get(bak, cas=False, ttl_left=True), meta_get(key, touch=ttl)]}
        replies = self._answer(answer, source)
        if replies is None:
            failed.add(source)
            return (yield from self._relocate(key, dead, failed, ttl))
        copy, moved = replies
        if moved.hit:
            self.counters[source].gets += 1
            return Record(moved.value or b"", moved.cas, source)
        if not copy.hit:
            self.counters[source].misses += 1
            return None
        ttl = ttl if ttl is not None else self.left(copy)
        value = copy.value or b""
        request: Request = {
            source: [meta_set(key, value, ttl=ttl, add=True), meta_get(key), meta_delete(bak)]
        }
        new_backup = self.backup_of(source, failed)
        if new_backup is not None:
            request[new_backup] = [meta_set(backup_key(source, key), value, ttl=ttl)]
        answer = yield request
        replies = self._answer(answer, source)
        if replies is None or not replies[1].hit:
            failed.add(source)
            return (yield from self._relocate(key, dead, failed, ttl))
        self.counters[source].relocations += 1
        log.info("session key %s relocated from %s to %s", key, dead, source)
        return Record(replies[1].value or b"", replies[1].cas, source)

    def _write(self, op: Write) -> Plan:
        key, node = op.key, self._node_of(op.node, op.key)
        ttl = self._ttl(op.ttl)
        add = op.version is None
        if not (add or isinstance(op.version, int)):
            return None  # versions are memcached cas tokens: anything else never matches
        cas = op.version if isinstance(op.version, int) else None
        backed = self.copies > 1 and self.replicated(key)
        failed: set[str] = set()
        if self.health.available(node):
            backup = self.backup_of(node, failed) if backed else None
            request: Request = {node: [meta_set(key, op.value, ttl=ttl, add=add, cas=cas)]}
            if backup is not None:
                request[backup] = [meta_set(backup_key(node, key), op.value, ttl=ttl)]
            sent = self.fresh.clock()
            answer = yield request
            replies = self._answer(answer, node)
            if replies is not None:
                reply = replies[0]
                if reply.code == b"HD":
                    self.counters[node].sets += 1
                    if backup is not None:
                        self._backup_answered(answer, backup, key, node, sent, op.ttl)
                    return Stored(reply.cas, node)
                self.counters[node].conflicts += 1
                self.fresh.forget(key)
                if backup is not None:
                    yield from self._repair_backup(key, node, backup)
                return None
            failed.add(node)
        self.fresh.forget(key)
        # The node named in the id is down: write to the next one; the session relocates.
        # Unconditional (the version belongs to the dead node), as MSM does on failover.
        target = self.first_available(node, failed | {node})
        if target is None:
            raise self.unavailable()
        request = {target: [meta_set(key, op.value, ttl=ttl, add=add)]}
        new_backup = None
        if backed:
            request[target].append(meta_delete(backup_key(node, key)))
            new_backup = self.backup_of(target, failed | {node})
            if new_backup is not None:
                request[new_backup] = [meta_set(backup_key(target, key), op.value, ttl=ttl)]
        sent = self.fresh.clock()
        answer = yield request
        replies = self._answer(answer, target)
        if replies is None:
            raise self.unavailable()
        if replies[0].code != b"HD":
            self.counters[target].conflicts += 1
            return None
        if new_backup is not None:
            self._backup_answered(answer, new_backup, key, target, sent, op.ttl)
        self.counters[target].sets += 1
        self.counters[target].relocations += 1
        log.info("session key %s written to %s instead of %s (relocated)", key, target, node)
        return Stored(replies[0].cas, target)

    def _repair_backup(self, key: str, primary: str, backup: str) -> Plan:
        """After a lost conditional write, make the backup equal the primary again (our
        write to the backup went out in parallel and must not outlive the conflict)."""
        answer = yield {primary: [meta_get(key, cas=False, ttl_left=True)]}
        replies = self._answer(answer, primary)
        if replies is None:
            return
        current = replies[0]
        bak = backup_key(primary, key)
        if current.hit:
            command = meta_set(bak, current.value or b"", ttl=self.left(current))
        else:
            command = meta_delete(bak)
        yield {backup: [command]}

    def _on_first_answering(self, node: str, build: Callable[[str], list[bytes]]) -> Plan:
        """Send ``build(target)`` to the first usable node from ``node``; on failure, the
        next one (each once). Returns ``(target, replies)``."""
        failed: set[str] = set()
        while (target := self.first_available(node, failed)) is not None:
            replies = self._answer((yield {target: build(target)}), target)
            if replies is not None:
                return target, replies
            failed.add(target)
        raise self.unavailable()

    def _add(self, op: Add) -> Plan:
        node = self._node_of(op.node, op.key)
        ttl = self._ttl(op.ttl)
        target, replies = yield from self._on_first_answering(
            node, lambda _: [meta_set(op.key, op.value, ttl=ttl, add=True)]
        )
        if replies[0].code == b"HD":
            return True
        self.counters[target].lock_waits += 1
        return False

    def _touch(self, op: Touch) -> Plan:
        node = self._node_of(op.node, op.key)
        ttl = self._ttl(op.ttl)
        touch = meta_get(op.key, value=False, cas=False, touch=ttl)
        _, replies = yield from self._on_first_answering(node, lambda _: [touch])
        return replies[0].hit

    def _delete(self, key: str, node: str) -> Plan:
        self.fresh.forget(key)
        if not (self.copies > 1 and self.replicated(key)):
            yield from self._on_first_answering(node, lambda _: [meta_delete(key)])
            return None
        failed: set[str] = set()
        while (target := self.first_available(node, failed)) is not None:
            request: Request = {target: [meta_delete(key)]}
            if target != node:  # relocated copies may sit under the old primary's backup key
                request[target].append(meta_delete(backup_key(node, key)))
            backup = self.backup_of(target, failed)
            if backup is not None:
                request.setdefault(backup, []).append(meta_delete(backup_key(target, key)))
            if self._answer((yield request), target) is not None:
                return None
            failed.add(target)
        raise self.unavailable()

    # -- batches ------------------------------------------------------------------------

    def run(self, plans: list[Plan]) -> Generator[Request, Answer, list[Any]]:
        """Run plans in lock step, merging each step's requests into one exchange.

        Every plan's first step goes out together, so a batch costs one round trip when
        nothing fails. A plan's answer is its return value or the ``StoreError`` it raised.
        """
        results: list[Any] = [None] * len(plans)
        pending: dict[int, Request] = {}

        def advance(index: int, answer: Answer | None) -> None:
            try:
                step = plans[index].send(answer)  # type: ignore[arg-type]
            except StopIteration as done:
                results[index] = done.value
            except StoreError as exc:
                results[index] = exc
            else:
                pending[index] = step

        for index in range(len(plans)):
            advance(index, None)
        while pending:
            merged: Request = {}
            slices: list[tuple[int, str, int, int]] = []
            for index, request in pending.items():
                for node, commands in request.items():
                    queue = merged.setdefault(node, [])
                    slices.append((index, node, len(queue), len(commands)))
                    queue.extend(commands)
            answer = yield merged
            own: dict[int, Answer] = {index: {} for index in pending}
            for index, node, start, count in slices:
                replies = answer[node]
                own[index][node] = (
                    replies if isinstance(replies, StoreError) else replies[start : start + count]
                )
            pending = {}
            for index, plan_answer in own.items():
                advance(index, plan_answer)
        return results

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "memcached",
            "copies": self.copies,
            "round_trips": self.io.exchanges,
            "sends": self.io.sends,
            "nodes": {
                node: {
                    "address": spec.address,
                    "state": self.health.state[node].value,
                    "failover": node in self.failover,
                    **self.counters[node].as_dict(),
                }
                for node, spec in zip(self.order, self.specs, strict=True)
            },
            "rereplicated": self.rereplicator.copied,
        }

    def drive(self, steps: Generator[Request, Answer, Any]) -> Any:
        """Run a plan (or ``run``) with blocking exchanges; used by the background work too."""
        self.health.ensure_running()
        answer: Answer | None = None
        while True:
            try:
                request = steps.send(answer)  # type: ignore[arg-type]
            except StopIteration as done:
                return done.value
            answer = self.io.exchange(request)


def cluster_from_config(config: SessionConfig) -> MemcachedCluster:
    """Build the cluster for ``config``; a malformed node list fails here, at start-up."""
    nodes = parse_nodes(config.nodes)
    locks = lock_key_prefix(config.key_prefix)
    failover = parse_failover_nodes(config.failover_nodes, nodes, sticky=config.sticky)
    return MemcachedCluster(
        nodes,
        failover=failover,
        copies=1 if config.sticky else 2,
        operation_timeout=config.operation_timeout,
        replicated=lambda key: not key.startswith(locks),
        key_prefix=config.key_prefix,
    )


def _raise(answer: Any) -> Any:
    if isinstance(answer, StoreError):
        raise answer
    return answer


class MemcachedStore(OperationStore):
    """The blocking memcached store (WSGI)."""

    def __init__(self, cluster: MemcachedCluster) -> None:
        self.cluster = cluster
        self.nodes = frozenset(cluster.order)

    def __repr__(self) -> str:
        return f"<MemcachedStore {self.cluster.health!r}>"

    def execute(self, op: StoreOp) -> Any:
        return _raise(self.cluster.drive(self.cluster.run([self.cluster.plan(op)]))[0])

    def place(self, key: str) -> str | None:
        return self.cluster.place(key)

    def batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        return self.cluster.drive(self.cluster.run([self.cluster.plan(op) for op in ops]))  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return self.cluster.stats()

    def close(self) -> None:
        self.cluster.health.stop()
        self.cluster.io.close()


class AsyncMemcachedStore(AsyncOperationStore):
    """The asyncio memcached store (ASGI): the same plans, answered with awaits."""

    def __init__(self, cluster: MemcachedCluster) -> None:
        self.cluster = cluster
        self.nodes = frozenset(cluster.order)
        self.io = AsyncConnections(
            cluster.specs, timeout=cluster.io.timeout, on_failure=cluster._on_failure
        )

    def __repr__(self) -> str:
        return f"<AsyncMemcachedStore {self.cluster.health!r}>"

    async def _drive(self, steps: Generator[Request, Answer, Any]) -> Any:
        self.cluster.health.ensure_running()
        answer: Answer | None = None
        while True:
            try:
                request = steps.send(answer)  # type: ignore[arg-type]
            except StopIteration as done:
                return done.value
            answer = await self.io.exchange(request)

    async def execute(self, op: StoreOp) -> Any:
        return _raise((await self._drive(self.cluster.run([self.cluster.plan(op)])))[0])

    def place(self, key: str) -> str | None:
        return self.cluster.place(key)

    async def batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        plans = [self.cluster.plan(op) for op in ops]
        return await self._drive(self.cluster.run(plans))  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        stats = self.cluster.stats()
        stats["round_trips"] += self.io.exchanges
        stats["sends"] += self.io.sends
        return stats

    async def aclose(self) -> None:
        self.cluster.health.stop()
        self.cluster.io.close()
        await self.io.aclose()
