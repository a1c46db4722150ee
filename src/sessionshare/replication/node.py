"""One member of a replication cluster: ownership, replication, state transfer.

This is the engine behind both peer stores. The two differ only in how many copies
a session has (``copies``): every ready member (``replicated``, Tomcat
DeltaManager) or two, a primary and a backup (``backup``, Tomcat BackupManager).

**Ownership.** Each key has an *owner*: the first live, ready member in the
rendezvous ranking of its token (``placement.py``). The owner answers every
change to the key: it checks the version of a conditional write, it is where a
lock ``add`` is atomic, and it pushes each change to the key's other holders. A
member that is not the owner sends the whole batch of operations to the owner in
one request and gets the answer *and* the changed entries back, so its own copy
is current before its response leaves; reads of keys this member holds are served
from its own table with no round trip at all.

**Acknowledged writes.** With ``sync_acks`` (the default) the owner answers a
write only after every other holder acknowledged it, so a ``kill -9`` of any
member right after a response loses nothing. A holder that does not acknowledge
within ``operation_timeout`` is dropped (it re-syncs before it serves again). It may
not know it yet, and think it still owns sessions that have new owners: so members
refuse the pushes and forwarded operations of a member epoch they dropped
(``DROPPED``), and a member whose change is refused fails it and re-syncs (issue #18).
TTL refreshes are pushed without waiting (losing one costs an expiry a little
early). Locks (``add``) live on the owner alone: a copy would cost a message per
locked request, and it would protect little, since the owner going away takes
its in-flight requests with it; a request elsewhere that held a lock there keeps
going unlocked, and the conditional write still merges its changes (SPEC §3).

**State transfer.** A member starts ``SYNCING``: it tells every reachable member
(which from then on sends it every change), pulls their entries, merges them by
version, and only then turns ``READY`` (and ``/healthz`` with it). Tomcat's
DeltaManager waits ``stateTransferTimeout`` (60 s) and then silently starts empty;
here the wait is ``join_timeout`` and running out of it is logged with the names
of the members that did not answer. A member whose event loop stalled (``kill
-STOP``) or that learns from gossip that it was dropped re-syncs the same way,
and serves nothing from its own table meanwhile: no stale reads after a pause.

Everything runs on one asyncio loop (the ASGI server's, or a background thread's
for WSGI servers); the table is thread-safe so WSGI threads read it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from sessionshare.core.operations import Add, Delete, Get, Record, Stored, Write
from sessionshare.errors import StoreTimeout, StoreUnavailable
from sessionshare.replication.frames import derive_key
from sessionshare.replication.locks import OwnerLocks
from sessionshare.replication.membership import (
    DROP_AFTER,
    HEARTBEAT_INTERVAL,
    MemberAddress,
    Membership,
    Status,
    own_slots,
)
from sessionshare.replication.messages import (
    Op,
    as_version,
    decode_op,
    decode_result,
    encode_op,
    encode_result,
)
from sessionshare.replication.placement import rank, token_of
from sessionshare.replication.table import Entry, Table, TableFull
from sessionshare.replication.transport import Link, RemoteError, connect

__all__ = ["REMOTE", "ReplicationNode"]

log = logging.getLogger("sessionshare.replication")

#: ``read_local``'s answer when the key must be read from its owner instead.
REMOTE: Any = object()
#: the answer to an ``apply`` or ``exec`` from a member epoch this member dropped: the
#: sender learns it was dropped, and must neither count it as an acknowledgement nor
#: drop the member that refused (issue #18).
DROPPED = "dropped"

#: Tomcat TcpFailureDetector's ``connectTimeout`` is 1 s; a member on loopback that
#: cannot finish a TCP connect and HELLO in half that is not answering.
CONNECT_TIMEOUT = 0.5
#: the ping a suspect member must answer before it is dropped (TcpFailureDetector's
#: send/read test); longer than a heartbeat interval, shorter than the drop time.
PROBE_TIMEOUT = 1.0
#: a state-transfer chunk: bounded so a member never buffers a whole table.
CHUNK_BYTES = 256 * 1024
#: seconds before retrying an operation whose link broke (times the attempt number).
RETRY_PAUSE = 0.05
#: rankings cached per member (a token and a few names each).
RANK_CACHE = 50_000
#: attempts of one operation across owner changes (dead owner -> next owner).
ATTEMPTS = 4
#: binding the replication port is retried this often (about 4.5 s in all): a port in
#: the ephemeral range can be held for a moment by some outgoing connection.
BIND_ATTEMPTS = 10
#: a table sweep every this many heartbeats (2 s).
SWEEP_EVERY = 4


def _let_go(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a call nobody waits for (asyncio would log it)."""
    if not future.cancelled() and future.exception() is not None:
        log.debug("an unacknowledged push failed: %r", future.exception())


class ReplicationNode:
    """This process's member: its table, its view of the others, its links to them."""

    def __init__(
        self,
        *,
        members: Sequence[MemberAddress],
        member_name: str,
        secret: str,
        copies: int | None,
        max_sessions: int = 100_000,
        sync_acks: bool = True,
        operation_timeout: float = 1.0,
        join_timeout: float = 10.0,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        drop_after: float = DROP_AFTER,
        kind: str = "replicated",
        route: str | None = None,
    ) -> None:
        self.members = list(members)
        self.slots = own_slots(self.members, member_name)
        self.address = self.slots[0]
        self.name = self.address.name
        self.kind = kind
        self.route = route
        self.key = derive_key(secret)
        self.copies = copies
        self.sync_acks = sync_acks
        self.operation_timeout = operation_timeout
        #: a remote owner may itself wait ``operation_timeout`` for a holder's ack (and
        #: then drop it and answer): never give up on it before that.
        self.exec_timeout = 2 * operation_timeout + CONNECT_TIMEOUT
        self.join_timeout = join_timeout
        self.heartbeat_interval = heartbeat_interval
        #: a loop that was away this long may have been dropped: re-sync.
        self.stall_limit = heartbeat_interval + min(operation_timeout, drop_after) / 2
        self.incarnation = secrets.randbits(62)
        self.epoch = 0
        self.status = Status.SYNCING
        self.table = Table(max_entries=max_sessions)
        self.locks = OwnerLocks()
        self.view = Membership((), drop_after=drop_after)
        #: set once the first state transfer finished: what ``/healthz`` reports.
        self.synced = threading.Event()
        #: ``synced.is_set()`` as a plain attribute, for the per-request checks.
        self.has_synced = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.last_tick = time.monotonic()
        self.counters: dict[str, int] = defaultdict(int)
        self._started: asyncio.Future[None] | None = None
        #: ``start`` succeeded (the fast check of ``execute``).
        self._running = False
        self._server: asyncio.AbstractServer | None = None
        self._out: dict[str, Link] = {}
        self._connecting: dict[str, asyncio.Future[Link]] = {}
        self._inbound: set[Link] = set()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._probing: set[str] = set()
        self._ready_peers: list[str] | None = None
        #: token -> ranking, while this member is (not) fresh: ``_ranked``.
        self._ranks: tuple[dict[str, list[str]], dict[str, list[str]]] = ({}, {})
        #: token -> ``_receivers`` in ``backup`` mode, cached the same way.
        self._targets: tuple[dict[str, list[str]], dict[str, list[str]]] = ({}, {})
        self._receivers_all: list[str] | None = None
        self._syncing_peers: list[str] | None = None
        self._placed_for: list[str] | None = None
        self._sync_task: asyncio.Future[None] | None = None
        self._resync_again = False
        self._realign_task: asyncio.Future[None] | None = None
        self._realign_again = False
        self._loop_thread: int | None = None
        self._full_logged_at = 0.0

    def __repr__(self) -> str:
        return (
            f"<ReplicationNode {self.name} {self.kind} {self.status.name} epoch={self.epoch} "
            f"entries={len(self.table)} {self.view!r}>"
        )

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the first free slot, then heartbeat and sync in the background."""
        loop = asyncio.get_running_loop()
        self.loop, self._loop_thread = loop, threading.get_ident()
        # Drawn again here, in the serving process: a node built before a fork (gunicorn
        # --preload) must not share its incarnation with its sibling or its successor.
        self.incarnation = secrets.randbits(62)
        self._started = loop.create_future()
        errors: list[str] = []
        for attempt in range(BIND_ATTEMPTS):
            slot = await self._bind(loop, errors)
            if slot is not None:
                break
            await asyncio.sleep(0.1 * (attempt + 1))
        else:
            error = StoreUnavailable(
                f"member {self.name}: could not bind its replication port ("
                + "; ".join(errors[-len(self.slots) :])
                + ")"
            )
            log.error("%s; this node will answer 503 until restarted", error)
            self._started.set_exception(error)
            self._started.exception()
            raise error
        self.address, self.name = slot, slot.name
        self.view = Membership(
            (m for m in self.members if m.name != self.name), drop_after=self.view.drop_after
        )
        self.last_tick = time.monotonic()
        self._started.set_result(None)
        self._running = True
        log.info("member %s listening on %s:%d", self.name, self.address.host, self.address.port)
        self._spawn(self._tick_forever())
        self._request_sync("start")

    async def _bind(
        self, loop: asyncio.AbstractEventLoop, errors: list[str]
    ) -> MemberAddress | None:
        """Listen on the first free slot of this member; ``None`` if all are taken."""
        for slot in self.slots:
            try:
                self._server = await loop.create_server(self._accept, slot.host, slot.port)
            except OSError as exc:
                errors.append(f"{slot}: {exc.strerror or exc}")
                continue
            return slot
        return None

    async def _until_started(self) -> None:
        """Wait for ``start``; raise its error if it failed (no port could be bound)."""
        if self._started is None or not self._started.done():
            await self.wait_started()
        elif self._started.exception() is not None:
            raise self._started.exception()  # type: ignore[misc]

    async def wait_started(self) -> None:
        while self._started is None:  # start() is scheduled but has not run yet
            await asyncio.sleep(0.001)
        await asyncio.shield(self._started)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
        for link in [*self._out.values(), *self._inbound]:
            link.close()
        self._out.clear()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("replication task failed", exc_info=task.exception())

    def call_soon(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function`` on the member's loop, from any thread."""
        assert self.loop is not None
        if threading.get_ident() == self._loop_thread:
            function(*args)
        else:
            self.loop.call_soon_threadsafe(function, *args)

    # -- who holds what ------------------------------------------------------------------

    @property
    def fresh(self) -> bool:
        """Ready, and the loop has not been away long enough to have been dropped."""
        return self.status is Status.READY and time.monotonic() - self.last_tick <= self.stall_limit

    def ready_members(self) -> list[str]:
        if self._ready_peers is None:
            self._ready_peers = self.view.with_status(Status.READY)
        names = [*self._ready_peers, self.name] if self.fresh else list(self._ready_peers)
        return names or [self.name]

    def holders(self, token: str, ready: Sequence[str]) -> list[str]:
        ranked = rank(token, ready)
        return ranked if self.copies is None else ranked[: self.copies]

    def _ranked(self, token: str) -> list[str]:
        """``rank`` over the ready members, cached until the view changes (it is asked
        two or three times per request, and each asks a hash per member)."""
        cache = self._ranks[self.fresh]
        ranked = cache.get(token)
        if ranked is None:
            if len(cache) >= RANK_CACHE:
                cache.clear()
            ranked = cache[token] = rank(token, self.ready_members())
        return ranked

    def owner(self, key: str) -> str:
        return self._ranked(token_of(key))[0]

    def owner_route(self, key: str) -> str | None:
        """The route of the app node whose member owns ``key`` (``None``: not known).

        Session ids carry it (``core/manager.py``), so a balancer with the ``sticky``
        policy sends each request to the node where the session's lock and version
        live: the lock is then taken with no message, and the only message a modifying
        request costs is the push to the other holders.
        """
        owner = self._ranked(token_of(key))[0]
        if owner == self.name:
            return self.route
        peer = self.view.peers.get(owner)
        return None if peer is None else peer.route

    def holds(self, key: str) -> bool:
        """Whether this member may answer a read of ``key`` from its own table."""
        if not self.fresh:
            return False
        if self.copies is None:
            return True
        return self.name in self._ranked(token_of(key))[: self.copies]

    def _receivers(self, key: str) -> list[str]:
        """Who gets this owner's changes to ``key``: the other holders, and members
        still syncing that will hold it once ready. Read it, do not change it (with
        ``replicated`` it is the one list cached until the view changes)."""
        if self.copies is None:
            if self._receivers_all is None:
                self._receivers_all = self.view.with_status(Status.READY, Status.SYNCING)
            return self._receivers_all
        token = token_of(key)
        cache = self._targets[self.fresh]  # like ``_ranked``: per view, per token
        targets = cache.get(token)
        if targets is None:
            if len(cache) >= RANK_CACHE:
                cache.clear()
            targets = cache[token] = self._backup_targets(token)
        return targets

    def _backup_targets(self, token: str) -> list[str]:
        ready = self.ready_members()
        if self.name in ready:
            holders = self._ranked(token)[: self.copies]
        else:
            ready = [*ready, self.name]
            holders = self.holders(token, ready)
        targets = [m for m in holders if m != self.name]
        if self._syncing_peers is None:
            self._syncing_peers = self.view.with_status(Status.SYNCING)
        for name in self._syncing_peers:
            if name in self.holders(token, [*ready, name]):
                targets.append(name)
        return targets

    def _view_changed(self) -> None:
        self._ranks = ({}, {})
        self._targets = ({}, {})
        self._ready_peers = None
        self._receivers_all = None
        self._syncing_peers = None
        if self.status is Status.READY:
            if self._realign_task is None or self._realign_task.done():
                self._realign_task = self._spawn(self._realign_until_settled())
            else:
                self._realign_again = True

    # -- the store's entry points -------------------------------------------------------------

    def read_local(self, key: str, touch: float | None) -> Any:
        """A read from this member's own table, or ``REMOTE`` if only the owner may answer."""
        if not self._running or not self.holds(key):
            return REMOTE
        entry = self.table.get(key, touch)
        if entry is None or entry.value is None:
            return None
        if touch is not None and entry.expires_at - entry.shared_until > max(1.0, touch / 100):
            # The user is active here: tell the other holders before their copy expires.
            entry.shared_until = entry.expires_at
            self.call_soon(self._spread_touch, key, touch)
        return Record(entry.value, entry.version)

    async def execute(self, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` (keys of one session) at their owner; answers in order.

        An operation that failed on its own answers with its ``StoreError``; a
        batch that could not run at all raises it. This is on the path of every
        request, so the usual case (this member owns the session) is handled right
        here: no further coroutine, one cached ranking.
        """
        if not self._running:
            await self._until_started()
        key = ops[0].key
        token = token_of(key)
        for op in ops:
            if op.key != key and token_of(op.key) != token:  # not one session: one by one
                return [(await self.execute([op]))[0] for op in ops]
        for attempt in range(ATTEMPTS):
            owner = self._ranked(token)[0]
            if owner == self.name:
                results, _, pushes, wait = self._apply_batch(ops, requester=None)
                if pushes and await self._push(pushes, wait=wait):
                    raise self._refused(pushes)
                return results
            try:
                link = await self._link(owner)
                wire = [encode_op(op) for op in ops]
                reply = await link.request("exec", [wire], self.exec_timeout)
            except TimeoutError:
                self._suspect(owner)
                raise StoreTimeout(
                    f"member {owner} did not answer within operation_timeout="
                    f"{self.operation_timeout}s"
                ) from None
            except ConnectionRefusedError:
                self._drop(owner, "refuses connections (process gone)")
                continue
            except OSError as exc:  # the link broke: the next attempt reconnects or finds it dead
                log.debug("member %s: %s failed on %s: %r; retrying", self.name, key, owner, exc)
                # A process being killed still completes TCP handshakes from its backlog
                # for a moment; give it that moment to refuse connections outright.
                await asyncio.sleep(RETRY_PAUSE * (attempt + 1))
                continue
            except RemoteError as exc:
                raise StoreUnavailable(f"member {owner}: {exc}") from None
            if reply[0] == "busy":  # it is not ready (re-syncing): learn that, ask the next
                self._announced(owner, Status(int(reply[1])), int(reply[2]), int(reply[3]))
                await asyncio.sleep(self.heartbeat_interval / 10)
                continue
            if reply[0] == DROPPED:  # it dropped this member: re-sync, ask again meanwhile
                self._learn_dropped(owner)
                await asyncio.sleep(self.heartbeat_interval / 10)
                continue
            results, entries = reply
            self._merge(entries)
            return [decode_result(result) for result in results]
        raise StoreUnavailable(f"no member could take the operation on {key}")

    # -- the owner's side ---------------------------------------------------------------------

    def _apply(self, op: Op) -> tuple[Any, Entry | None, bool]:
        """(answer, entry to push, whether the push must be acknowledged)."""
        table = self.table
        kind = type(op)  # exact types: operations are final dataclasses (and this is hot)
        if kind is Write:
            try:
                entry = table.write(op.key, op.value, op.ttl, as_version(op.version))
            except TableFull as exc:
                return self._full(exc), None, False
            return (None if entry is None else Stored((entry.seq, entry.nonce))), entry, True
        if kind is Get:
            entry = table.get(op.key, op.touch)
            if entry is None or entry.value is None:
                return None, None, False
            refresh = None
            if op.touch is not None and entry.expires_at - entry.shared_until > max(
                1.0, op.touch / 100
            ):
                entry.shared_until = entry.expires_at
                refresh = entry
            return Record(entry.value, (entry.seq, entry.nonce)), refresh, False
        if kind is Add:  # a lock: it lives on the owner alone (no push)
            return self.locks.add(op.key, op.value, op.ttl), None, False
        if kind is Delete:
            if self.locks.release(op.key):
                return None, None, False
            return None, table.delete(op.key), True
        if self.locks.touch(op.key, op.ttl):  # a lock renewed while its request runs
            return True, None, False
        entry = table.touch(op.key, op.ttl)
        return entry is not None, entry, False

    def _full(self, exc: TableFull) -> StoreUnavailable:
        self.counters["rejected_full"] += 1
        now = time.monotonic()
        if now - self._full_logged_at > 10:
            self._full_logged_at = now
            log.warning(
                "member %s: %s; new sessions are refused with 503 until some expire "
                "(raise max_sessions%s)",
                self.name,
                exc,
                " or add members" if self.copies is not None else "",
            )
        return StoreUnavailable(f"member {self.name} is full: {exc}")

    def _wire(self, key: str, entry: Entry | None, *, force: bool = False) -> list[Any]:
        """An entry as it travels; ``force``: the owner's copy, to replace any other."""
        if entry is None:  # forced only: the owner has no such key
            return [key, None, 0, 0, 0.0, True]
        wire = [key, entry.value, entry.seq, entry.nonce, self.table.remaining(entry)]
        return [*wire, True] if force else wire

    def _apply_batch(
        self, ops: Sequence[Op], requester: str | None
    ) -> tuple[list[Any], list[list[Any]], dict[str, list[list[Any]]], bool]:
        """Apply ``ops`` as their owner, with no I/O.

        Returns the answers, the changed entries for the requester (it merges them
        before it answers its own client), the pushes for the other holders, and
        whether those pushes must be acknowledged before the answer goes out.
        """
        results: list[Any] = []
        pushes: dict[str, list[list[Any]]] = {}
        for_requester: list[list[Any]] = []
        acked = False
        for op in ops:
            result, entry, needs_ack = self._apply(op)
            results.append(result)
            if result is None and requester is not None and type(op) is Write:
                # A conflict: the requester read a copy the owner does not have (a change
                # its previous owner pushed to some holders only, before it was killed, so
                # no client saw it succeed). The owner's copy is the truth: send it along.
                for_requester.append(self._wire(op.key, self.table.current(op.key), force=True))
            if entry is None:
                continue
            wire = self._wire(op.key, entry)
            for target in self._receivers(op.key):
                if target == requester:
                    for_requester.append(wire)
                elif target in pushes:
                    pushes[target].append(wire)
                else:
                    pushes[target] = [wire]
            acked |= needs_ack
        return results, for_requester, pushes, acked and self.sync_acks

    def _push_now(self, pushes: dict[str, list[list[Any]]]) -> None:
        """Send pushes nobody waits for (TTL refreshes, ``replication_async``).

        They travel as calls, in the same batches as acknowledged ones, although
        nobody awaits the answer: a notification each was a frame each, and made
        ``replication_async`` slower than waiting (docs/replication.md). A push that
        fails is let go, as a notification would be: heartbeats find dead members.
        """
        self.counters["pushes"] += len(pushes)
        for name, entries in pushes.items():
            link = self._out.get(name)
            if link is not None and not link.closed:
                self._push_unawaited(link, entries)
            else:
                self._spawn(self._push_after_dial(name, entries))

    def _push_unawaited(self, link: Link, entries: list[list[Any]]) -> None:
        link.request("apply", [entries], self.operation_timeout).add_done_callback(_let_go)

    async def _push(self, pushes: dict[str, list[list[Any]]], *, wait: bool) -> bool:
        """Send ``pushes``; with ``wait``, until each receiver acknowledged or was dropped.

        Returns True if a receiver refused them because it dropped this member: then
        the change is not acknowledged, and must not be answered as done (``_refused``).
        """
        if not wait:
            self._push_now(pushes)
            return False
        self.counters["pushes"] += len(pushes)
        if len(pushes) == 1:  # two members: no task per push (gather would make one)
            for name, entries in pushes.items():
                try:
                    if await self._acked(name, entries) == DROPPED:
                        self._learn_dropped(name)
                        return True
                except (OSError, TimeoutError, RemoteError) as exc:
                    if self._not_acknowledged(name, exc):
                        return True
            return False
        names = list(pushes)
        outcomes = await asyncio.gather(
            *(self._acked(name, pushes[name]) for name in names), return_exceptions=True
        )
        refused = False
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                refused |= self._not_acknowledged(name, outcome)
            elif outcome == DROPPED:
                self._learn_dropped(name)
                refused = True
        return refused

    def _refused(self, pushes: dict[str, list[list[Any]]]) -> StoreUnavailable:
        """A change this member applied as owner was refused by a member that dropped it.

        The others moved its sessions to new owners, which may have changed them since:
        the copy this member changed may be stale, and its change was not acknowledged.
        Forget it (the re-sync that ``_learn_dropped`` started pulls the others' copy)
        and fail the operation: the client gets a 503 with ``Retry-After``, and its
        retry goes to the sessions' new owner. Never a lost update (issue #18).
        """
        for entries in pushes.values():
            for key, _value, seq, nonce, *_ in entries:
                self.table.forget(key, seq, nonce)
        self._request_sync("a write of this member was refused")
        return StoreUnavailable(
            f"member {self.name} was dropped by the other members; it is re-syncing, retry"
        )

    def _learn_dropped(self, by: str) -> None:
        """``by`` refused a call because it dropped this member: stop serving as if
        ready (as when a heartbeat's gossip tells it) and re-sync under a new epoch."""
        if self.status is Status.READY:
            log.warning(
                "member %s: %s refused a call: it dropped this member; re-syncing", self.name, by
            )
            self.status = Status.SYNCING
            self._view_changed()
            self._request_sync(f"refused by {by}")

    def _not_acknowledged(self, name: str, error: BaseException) -> bool:
        """``name`` did not acknowledge a push: drop it, or doubt this member instead.

        A timeout is no proof that ``name`` is gone (a refused or reset connection is:
        that process is dead). When no other member is left to acknowledge, the likelier
        story is that *this* member was away (paused, starved) and the others dropped it
        and closed the connections its answers travel on: going on alone would make it
        the owner of every session with a stale table (issue #18). So it re-syncs
        instead, and returns True: the push counts as refused (503, never acknowledged).
        A member that is really gone is still dropped, by the heartbeats' silence check.
        """
        self.counters["ack_failures"] += 1
        others = [peer for peer in self.view.with_status(Status.READY) if peer != name]
        if isinstance(error, TimeoutError) and not others:
            if self.status is Status.READY:
                log.warning(
                    "member %s: %s did not acknowledge a write and no other member is left; "
                    "this member may be the one that was away: re-syncing",
                    self.name,
                    name,
                )
                self.status = Status.SYNCING
                self._view_changed()
            self._request_sync(f"{name} did not acknowledge")
            return True
        self._drop(name, f"did not acknowledge a write ({error!r})")
        return False

    def _acked(self, name: str, entries: list[list[Any]]) -> Awaitable[Any]:
        """``entries`` sent to ``name``: awaitable until it acknowledged them."""
        link = self._out.get(name)
        if link is not None and not link.closed:  # the usual case: no coroutine needed
            return link.request("apply", [entries], self.operation_timeout)
        return self._acked_after_dial(name, entries)

    async def _acked_after_dial(self, name: str, entries: list[list[Any]]) -> Any:
        link = await self._link(name)
        return await link.request("apply", [entries], self.operation_timeout)

    async def _push_after_dial(self, name: str, entries: list[list[Any]]) -> None:
        with contextlib.suppress(OSError):  # unacknowledged by design: heartbeats check it
            self._push_unawaited(await self._link(name), entries)

    def _merge(self, entries: Sequence[Sequence[Any]]) -> int:
        merged = 0
        merge = self.table.merge
        for entry in entries:
            key, value, seq, nonce, ttl = entry[:5]
            # Signed by a member, but still checked: a bad type must fail here, in the
            # request that carried it, not later in whatever reads the table.
            if not (type(key) is str and type(seq) is int and type(nonce) is int):
                raise TypeError(f"malformed entry for {key!r}")
            if value is not None and type(value) is not bytes:
                raise TypeError(f"malformed value for {key!r}")
            if merge(key, value, seq, nonce, float(ttl), force=len(entry) > 5 and entry[5]):
                merged += 1
        return merged

    def _spread_touch(self, key: str, ttl: float) -> None:
        owner = self.owner(key)
        if owner == self.name:
            entry = self.table.get(key)
            if entry is not None:
                pushes = {t: [self._wire(key, entry)] for t in self._receivers(key)}
                self._push_now(pushes)
            return
        link = self._out.get(owner)
        if link is not None and not link.closed:
            link.notify("touch", [key, ttl])

    # -- frames from other members (transport.Hub) ----------------------------------------

    def _accept(self) -> Link:
        link = Link(self)
        self._inbound.add(link)
        return link

    def is_member(self, name: str) -> bool:
        return name in self.view.peers

    def frame_dropped(self, link: Link, reason: str) -> None:
        self.counters["frames_dropped"] += 1
        log.warning(
            "member %s: dropped a frame from %s (claimed member %s): %s; connection closed",
            self.name,
            link.peername,
            link.peer or "unknown",
            reason,
        )

    def link_up(self, link: Link) -> None:
        assert link.peer is not None
        self.view.heard_from(link.peer, time.monotonic())
        peer = self.view.peers.get(link.peer)
        if peer is not None:
            peer.route = link.peer_route

    def link_down(self, link: Link) -> None:
        self._inbound.discard(link)
        if link.peer is not None and self._out.get(link.peer) is link:
            del self._out[link.peer]
            peer = self.view.peers.get(link.peer)
            if peer is not None and peer.status is not Status.DOWN and self.loop is not None:
                self._spawn(self._check_gone(link.peer))

    def carrier(self, peer: str) -> Link | None:
        link = self._out.get(peer)
        return None if link is None or link.closed else link

    answers_for = carrier  # requests to ``peer`` leave on the link this member dialled

    def on_request(self, link: Link, method: str, args: list[Any]) -> Any:
        peer = link.peer
        assert peer is not None
        state = self.view.peers.get(peer)
        if state is not None:
            state.last_heard = time.monotonic()
            if state.dropped is not None and method in ("apply", "exec"):
                # Its sessions have other owners now, and it may not know yet: a change
                # it made as their owner would start from a stale copy (issue #18).
                return DROPPED if method == "apply" else [DROPPED]
        if method == "apply":  # a holder's side of every replicated write: first
            return self._merge(args[0])
        if method == "exec":
            return self._serve_exec(peer, [decode_op(op) for op in args[0]])
        if method == "status":
            self._announced(peer, Status(int(args[0])), int(args[1]), int(args[2]))
            return [int(self.status), self.incarnation, self.epoch]  # and ours, in return
        if method == "snapshot":
            return self._serve_snapshot(link)
        if method == "ping":
            return "pong"
        raise ValueError(f"unknown method {method!r}")

    def on_notify(self, link: Link, method: str, args: list[Any]) -> None:
        peer = link.peer
        assert peer is not None
        self.view.heard_from(peer, time.monotonic())
        if method == "apply":
            self._merge(args[0])
        elif method == "hb":
            status, incarnation, epoch, drops = args
            self._announced(peer, Status(int(status)), int(incarnation), int(epoch))
            if self.view.adopt(drops, self.name, (self.incarnation, self.epoch)):
                log.warning("member %s: %s dropped this member; re-syncing", self.name, peer)
                self._request_sync(f"dropped by {peer}")
            self._view_changed_if_dropped()
        elif method == "touch":
            key, ttl = str(args[0]), float(args[1])
            entry = self.table.touch(key, ttl)
            if entry is not None:
                targets = [t for t in self._receivers(key) if t != peer]
                self._push_now({t: [self._wire(key, entry)] for t in targets})
        else:
            raise ValueError(f"unknown notification {method!r}")

    def _view_changed_if_dropped(self) -> None:
        """Gossip may have dropped a member: forget the lists cached for the old view."""
        cached = (
            (self._ready_peers, (Status.READY,)),
            (self._syncing_peers, (Status.SYNCING,)),
            (self._receivers_all, (Status.READY, Status.SYNCING)),
        )
        view = self.view
        if any(names is not None and names != view.with_status(*kinds) for names, kinds in cached):
            self._view_changed()

    def _announced(self, peer: str, status: Status, incarnation: int, epoch: int) -> None:
        if self.view.announce(peer, status, incarnation, epoch, time.monotonic()):
            log.info("member %s: %s is %s (epoch %d)", self.name, peer, status.name, epoch)
            self._view_changed()

    def _serve_exec(self, requester: str, ops: list[Op]) -> Any:
        """Answer at once when nothing must be acknowledged first (no task, no extra
        trip through the event loop): with two members, every batch."""
        if not self.fresh:
            # Not ready, or just back from a pause: requests that waited in the socket
            # meanwhile were given up by their sender (and others may own these keys now).
            return ["busy", int(Status.SYNCING), self.incarnation, self.epoch]
        results, entries, pushes, wait = self._apply_batch(ops, requester)
        reply = [[encode_result(result) for result in results], entries]
        if not pushes:
            return reply
        if not wait:
            self._push_now(pushes)
            return reply
        return self._after_push(pushes, reply)

    async def _after_push(self, pushes: dict[str, list[list[Any]]], reply: Any) -> Any:
        if await self._push(pushes, wait=True):
            raise self._refused(pushes)
        return reply

    async def _serve_snapshot(self, link: Link) -> int:
        """Stream this member's entries to a syncing member, then answer with the count."""
        requester = link.peer
        assert requester is not None
        ready = [*self.ready_members(), requester]
        chunk: list[list[Any]] = []
        size = sent = 0
        for key, entry in self.table.snapshot():
            if self.copies is not None and requester not in self.holders(token_of(key), ready):
                continue
            chunk.append(self._wire(key, entry))
            size += len(key) + len(entry.value or b"") + 40
            if size >= CHUNK_BYTES:
                link.notify("apply", [chunk])
                sent += len(chunk)
                chunk, size = [], 0
                await link.drain()
        if chunk:
            link.notify("apply", [chunk])
            sent += len(chunk)
        return sent

    # -- links ------------------------------------------------------------------------------

    async def _link(self, name: str) -> Link:
        """The connection this member dialled to ``name``, dialling it if needed."""
        link = self._out.get(name)
        if link is not None and not link.closed:
            return link
        pending = self._connecting.get(name)
        if pending is None:
            address = self.view.peers[name].address
            pending = asyncio.ensure_future(
                connect(self, name, address.host, address.port, CONNECT_TIMEOUT)
            )
            self._connecting[name] = pending
            pending.add_done_callback(lambda done: self._connected(name, done))
        return await asyncio.shield(pending)

    def _connected(self, name: str, done: asyncio.Future[Link]) -> None:
        self._connecting.pop(name, None)
        if not done.cancelled() and done.exception() is None:
            self._out[name] = done.result()

    async def _check_gone(self, name: str) -> None:
        """A link broke: reconnect at once; a refused connection means the process is gone."""
        try:
            await self._link(name)
        except ConnectionRefusedError:
            self._drop(name, "its connection closed and it refuses new ones (process gone)")
        except OSError:
            pass  # timeouts are the heartbeats' business

    # -- membership -------------------------------------------------------------------------

    def _drop(self, name: str, reason: str) -> None:
        if self.view.drop(name):
            self.counters["members_dropped"] += 1
            log.warning("member %s: dropped %s: %s", self.name, name, reason)
            link = self._out.pop(name, None)
            if link is not None:
                link.close()
            self._view_changed()
            self._gossip_now()

    def _gossip_now(self) -> None:
        """Tell every member of a drop now, not at the next heartbeat.

        On a live link the heartbeat is queued before any later push, so a member
        learns that the dropped one no longer owns its sessions before it receives a
        change that the new owners made to them, and from then on it refuses the
        dropped member's changes (``DROPPED``). The dropped member learns it too, as
        soon as it reads anything from this member again.
        """
        for name in self.view.peers:
            link = self._out.get(name)
            if link is not None and not link.closed:
                with contextlib.suppress(OSError):
                    link.notify("hb", [int(self.status), self.incarnation, self.epoch,
                                       self.view.gossip()])  # fmt: skip
            elif name not in self._connecting:
                self._spawn(self._heartbeat(name))

    def _suspect(self, name: str) -> None:
        if name not in self._probing:
            self._probing.add(name)
            self._spawn(self._probe(name))

    async def _probe(self, name: str) -> None:
        """Tomcat TcpFailureDetector: a suspect must answer a ping over TCP, or is dropped."""
        try:
            link = await self._link(name)
            await link.request("ping", [], PROBE_TIMEOUT)
            self.view.heard_from(name, time.monotonic())
        except (OSError, TimeoutError, RemoteError) as exc:
            self._drop(name, f"silent, and failed the TCP check ({exc!r})")
        finally:
            self._probing.discard(name)

    async def _tick_forever(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            ticks += 1
            now = time.monotonic()
            away, self.last_tick = now - self.last_tick, now
            if away > self.stall_limit and self.status is Status.READY:
                log.warning(
                    "member %s: event loop was away %.1fs (paused or overloaded); other "
                    "members may have dropped it: re-syncing before serving from its table",
                    self.name,
                    away,
                )
                self.status = Status.SYNCING
                self._request_sync("stalled")
            for name in self.view.peers:
                if name not in self._connecting:
                    self._spawn(self._heartbeat(name))
            for name in self.view.silent(now):
                self._suspect(name)
            if ticks % SWEEP_EVERY == 0:
                self.table.sweep()
                self.locks.sweep()

    async def _heartbeat(self, name: str) -> None:
        try:
            link = await self._link(name)
            gossip = self.view.gossip()
            link.notify("hb", [int(self.status), self.incarnation, self.epoch, gossip])
        except ConnectionRefusedError:
            self._drop(name, "refuses connections")
        except OSError:
            pass

    # -- state transfer ---------------------------------------------------------------------

    def _request_sync(self, reason: str) -> None:
        if self._sync_task is not None and not self._sync_task.done():
            self._resync_again = True
            return
        self._sync_task = self._spawn(self._sync(reason))

    async def _announce(self, name: str) -> bool:
        try:
            link = await self._link(name)
            args = [int(self.status), self.incarnation, self.epoch]
            status, incarnation, epoch = await link.request("status", args, self.operation_timeout)
        except (OSError, TimeoutError, RemoteError):
            return False
        # Learn the answer's state now, not at its next heartbeat: until both sides agree
        # on who is ready they would disagree on who owns what.
        self._announced(name, Status(int(status)), int(incarnation), int(epoch))
        return True

    async def _pull(self, name: str) -> int:
        link = await self._link(name)
        return int(await link.request("snapshot", [], self.join_timeout))

    async def _sync(self, reason: str) -> None:
        while True:
            self._resync_again = False
            self.epoch += 1
            self.status = Status.SYNCING
            self._view_changed()
            started = time.monotonic()
            peers = list(self.view.peers)
            answered = await asyncio.gather(*(self._announce(name) for name in peers))
            reachable = [name for name, ok in zip(peers, answered, strict=True) if ok]
            pulls = {name: asyncio.ensure_future(self._pull(name)) for name in reachable}
            received = 0
            if pulls:
                _, pending = await asyncio.wait(pulls.values(), timeout=self.join_timeout)
                for name, task in pulls.items():
                    if task in pending:
                        task.cancel()
                        log.warning(
                            "member %s: state transfer from %s did not finish within "
                            "join_timeout=%ss; starting without it",
                            self.name,
                            name,
                            self.join_timeout,
                        )
                    elif task.exception() is not None:
                        log.warning(
                            "member %s: state transfer from %s failed: %r",
                            self.name,
                            name,
                            task.exception(),
                        )
                    else:
                        received += task.result()
            if self._resync_again:
                # Dropped again, or a change of this member was undone meanwhile
                # (``_refused``): pull again before serving from the table.
                continue
            self.status = Status.READY
            self.last_tick = time.monotonic()
            self._view_changed()
            # Placement as of now: the sessions just received are placed for this view,
            # and any later change is compared with it (``_realign``).
            self._placed_for = self.ready_members()
            log.info(
                "member %s ready (%s, epoch %d): %d entries from %s in %.2fs; %d held",
                self.name,
                reason,
                self.epoch,
                received,
                ", ".join(reachable) or "nobody (first member up)",
                time.monotonic() - started,
                len(self.table),
            )
            self.counters["syncs"] += 1
            await asyncio.gather(*(self._announce(name) for name in reachable))
            self._view_changed()
            self.synced.set()
            self.has_synced = True
            if not self._resync_again:
                return

    async def _realign_until_settled(self) -> None:
        while True:
            self._realign_again = False
            await self._realign()
            if not self._realign_again:
                return

    async def _realign(self) -> None:
        """After a membership change, make each moved key's holders agree with its owner.

        A change the old owner had not finished pushing when it was killed may have
        reached some holders and not others; no client was told it succeeded (writes
        are answered after every holder acknowledged), so the new owner's copy wins
        and it pushes that copy, forced, to the other holders. In ``backup`` mode this
        is also how a promoted backup picks a new backup (BackupManager does the same):
        it pushes to the member next in line; and a member that no longer holds a key
        forgets its copy.
        """
        await asyncio.sleep(self.heartbeat_interval / 5)  # let a burst of changes settle
        ready = self.ready_members()
        previous, self._placed_for = self._placed_for, ready
        if previous is None or not self.fresh:
            return
        batches: dict[str, list[str]] = defaultdict(list)
        for key, entry in self.table.snapshot():
            token = token_of(key)
            holders, before = self.holders(token, ready), self.holders(token, previous)
            if holders[0] == self.name and (before[0] != self.name or set(holders) - set(before)):
                for target in holders[1:]:
                    batches[target].append(key)
            elif self.copies is not None and self.name not in holders and entry.value is not None:
                self.table.drop(key)  # its new owner held it already (backup, or join)
        for name, keys in batches.items():
            for start in range(0, len(keys), 500):
                try:
                    link = await self._link(name)
                    # Read the copies only now, with no await before the send: a newer
                    # change pushed meanwhile on this same link must not be overtaken.
                    chunk = [(k, self.table.current(k)) for k in keys[start : start + 500]]
                    entries = [self._wire(k, e, force=True) for k, e in chunk if e is not None]
                    if await link.request("apply", [entries], self.join_timeout) == DROPPED:
                        self._learn_dropped(name)
                        return
                except (OSError, TimeoutError, RemoteError) as exc:
                    log.warning("member %s: realigning %s failed: %r", self.name, name, exc)
                    break
        if batches:
            log.info(
                "member %s: now owner of moved sessions; pushed its copies to %s",
                self.name,
                ", ".join(sorted(batches)),
            )

    # -- status -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        peers = {
            p.name: {"status": p.status.name.lower(), "epoch": p.epoch}
            for p in self.view.peers.values()
        }
        return {
            "kind": self.kind,
            "member": self.name,
            "address": f"{self.address.host}:{self.address.port}",
            "status": self.status.name.lower(),
            "epoch": self.epoch,
            "sessions": len(self.table),
            "locks_held": len(self.locks),
            "max_sessions": self.table.max_entries,
            "expired": self.table.expired,
            "rejected_full": self.counters["rejected_full"],
            "frames_dropped": self.counters["frames_dropped"],
            "pushes": self.counters["pushes"],
            "requests_sent": self.counters["requests_sent"],
            "calls_sent": self.counters["calls_sent"],
            "replies_sent": self.counters["replies_sent"],
            "ack_failures": self.counters["ack_failures"],
            "members_dropped": self.counters["members_dropped"],
            "syncs": self.counters["syncs"],
            "peers": peers,
        }
