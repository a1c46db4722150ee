"""The session protocol of one request, from ``Cookie`` to ``Set-Cookie``, with no I/O.

This module is the only place that decides what happens to a session. Each step
is a generator that *yields* store operations (``core/operations.py``) and gets
the store's answers sent back; ``runners.py`` drives it with a sync or an async
store. The WSGI and ASGI middlewares only translate their server's request into
a ``RequestInfo`` and call, in order::

    state = run(manager.open(request))      # cookie -> id -> (lock +) load
    ... the application runs with state.session ...
    cookies = run(manager.save(state))      # write if changed (+ unlock) -> Set-Cookie
    run(manager.release(state))             # always, in a finally: unlock if still held

Store round trips per request (the figures in docs/benchmarks.md):

- no cookie, session unused: 0;
- read-only: 1 (read and TTL refresh in one ``Get(touch=…)``);
- modifying: 2 (read, conditional write);
- locked: still 2 (``Add`` lock + read pipelined; write + unlock pipelined).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Generator, Hashable
from dataclasses import dataclass
from typing import Any

from sessionshare.config import SessionConfig
from sessionshare.core.backoff import ExponentialBackoff
from sessionshare.core.cookies import CookieSpec, read_cookie_values
from sessionshare.core.envelope import (
    Envelope,
    decode_attributes,
    decode_envelope,
    encode_envelope,
)
from sessionshare.core.ids import SessionId, new_token, parse_session_id
from sessionshare.core.locking import LockPolicy
from sessionshare.core.operations import (
    Add,
    Batch,
    Delete,
    Get,
    Operation,
    Record,
    Sleep,
    Touch,
    Write,
)
from sessionshare.core.serializers import make_serializer
from sessionshare.core.session import Session
from sessionshare.core.sticky import GenerationTable, LocalCopy, SharedGenerations, StickyCache
from sessionshare.errors import (
    LockTimeout,
    SerializationError,
    SessionShareError,
    SessionTooLarge,
    StoreError,
    StoreUnavailable,
    WriteConflict,
)

__all__ = [
    "ErrorResponse",
    "ManagerStats",
    "RequestInfo",
    "RequestSession",
    "SessionManager",
    "lock_key_prefix",
]

log = logging.getLogger("sessionshare")

Steps = Generator[Operation, Any, Any]

#: conflicting conditional writes merged and retried before giving up with 503.
MAX_MERGE_ATTEMPTS = 8
#: how long undeserializable session bytes are kept aside for an operator (7 days).
QUARANTINE_TTL = 7 * 86400.0


def _no_steps() -> Steps:
    """A protocol step with nothing to do (no store operation)."""
    return
    yield  # a generator function, so drivers can run it like any other step


def lock_key_prefix(key_prefix: str) -> str:
    """Session locks live under this prefix; stores keep them as single copies (no backup)."""
    return f"{key_prefix}:lock:"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The parts of an HTTP request the session protocol looks at."""

    method: str
    path: str
    scheme: str = "http"
    cookie: str | None = None
    #: a request that only reads its session and is never saved (a WebSocket handshake):
    #: it takes no lock.
    readonly: bool = False


@dataclass(slots=True)
class RequestSession:
    """One request's session and what the protocol must remember between steps."""

    request: RequestInfo
    session: Session
    #: store key; ``None`` when the request is ignored (static files) and nothing is stored.
    key: str | None
    #: version read from the store, for the conditional write (``None``: new session).
    version: Hashable | None = None
    #: the attribute bytes as loaded: the "before" snapshot for change detection.
    baseline: bytes | None = None
    loaded_max_inactive: float | None = None
    #: sticky mode: the store blob still to back up after the response, and the
    #: generation that marks it pending (``core/sticky.py``); or only a TTL refresh.
    backup: bytes | None = None
    backup_generation: int = 0
    touch_backup: bool = False
    #: lock key while this request holds the session lock.
    lock_key: str | None = None
    #: the id the client holds is not the session's id any more (new, relocated, rerouted).
    cookie_outdated: bool = False
    had_cookie: bool = False

    @property
    def ignored(self) -> bool:
        return self.key is None


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """What a driver sends when the session layer cannot serve the request."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class ManagerStats:
    """Counters for the status page; plain ints, so reading them never blocks."""

    requests: int = 0
    created: int = 0
    loaded: int = 0
    misses: int = 0
    writes: int = 0
    relocations: int = 0
    invalid_ids: int = 0
    corrupt: int = 0
    lock_waits: int = 0
    lock_timeouts: int = 0
    conflicts: int = 0
    too_large: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class SessionManager:
    """The session protocol for one application; shared by all its requests.

    It never touches a store itself: ``place`` (choose the node of a new session),
    ``nodes`` (node ids an id may name) and ``preferred_route`` (see ``_route``) are
    the store's only I/O-free members it needs. ``clock`` (monotonic, lock deadlines)
    and ``wallclock`` (timestamps shown to users) are injectable so tests control time.
    """

    def __init__(
        self,
        config: SessionConfig,
        *,
        nodes: frozenset[str] = frozenset(),
        place: Callable[[str], str | None] = lambda key: None,
        preferred_route: Callable[[str], str | None] = lambda key: None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        backoff: ExponentialBackoff | None = None,
        generations: GenerationTable | None = None,
    ) -> None:
        self.config = config
        self.nodes = nodes
        self.place = place
        self.preferred_route = preferred_route
        self.clock = clock
        self.wallclock = wallclock
        self.backoff = backoff or ExponentialBackoff()
        self.stats = ManagerStats()
        self._serializer = make_serializer(config.serializer, config.secret)
        self._cookie = CookieSpec.from_config(config)
        self._ignore = re.compile(config.ignore, re.IGNORECASE) if config.ignore else None
        self._filter = re.compile(config.attribute_filter) if config.attribute_filter else None
        # Locking is for non-sticky mode only: in sticky mode one node owns the session.
        self.locking = LockPolicy(config.locking, enabled=not config.sticky)
        # Locks are short-lived leases that the driver renews while their request runs
        # (``renew_locks``): a live request keeps its lock as long as it needs, while a
        # lock left by a node killed mid-request (SPEC §7.2) expires within ``lock_ttl``,
        # before the retried request's ``lock_timeout`` runs out.
        self.lock_ttl = max(1.0, min(2.0, config.lock_timeout / 2))
        #: renew held locks this often (seconds).
        self.lock_renew_interval = self.lock_ttl / 3
        self._held_locks: dict[str, str | None] = {}  # lock key -> store node
        #: sticky mode: this process's live sessions (MSM sticky=true), validated against
        #: the generation table that all workers of this app node share.
        self.sticky: StickyCache | None = None
        if config.sticky:
            table = generations or SharedGenerations.for_node(config.route, config.key_prefix)
            self.sticky = StickyCache(table, capacity=config.max_sessions)

    def __repr__(self) -> str:
        return (
            f"<SessionManager store={self.config.store} route={self.config.route} "
            f"{self.locking!r} requests={self.stats.requests}>"
        )

    # -- keys -------------------------------------------------------------------------

    def session_key(self, token: str) -> str:
        return f"{self.config.key_prefix}:s:{token}"

    def lock_key(self, token: str) -> str:
        return lock_key_prefix(self.config.key_prefix) + token

    def quarantine_key(self, token: str) -> str:
        return f"{self.config.key_prefix}:quarantine:{token}"

    def route_for(self, key: str) -> str | None:
        """The route a session's id carries, when routes are on.

        Normally the serving node's (Tomcat's jvmRoute): a sticky balancer keeps the
        user where the live session is. With a peer store in non-sticky mode the
        store may name a better node, the one that owns the session (its lock and
        version live there): the balancer then sends requests where they cost no
        message to take the lock, and a round-robin balancer, which ignores routes,
        leaves ids unchanged from request to request.
        """
        route = self.config.route
        if route is None or self.sticky is not None:
            return route
        return self.preferred_route(key) or route

    # -- step 1: open -------------------------------------------------------------------

    def open(self, request: RequestInfo) -> Steps:
        """Resolve the cookie to a session: lock and load it, or start a new one."""
        self.stats.requests += 1
        if self._ignore is not None and self._ignore.match(request.path):
            return self._detached(request)
        sid = self._sid_from_cookie(request.cookie)
        if sid is None:
            return self._new(request, had_cookie=bool(request.cookie))
        key = self.session_key(sid.token)
        generation = 0
        if self.sticky is not None:
            local = yield from self._open_local(request, sid, key)
            if local is not None:
                return local
            generation = self.sticky.table.read(sid.token)  # before the load, not after
        get = Get(key=key, node=sid.node, touch=self.config.max_inactive)
        lock_key = None
        if not request.readonly and self.locking.needs_lock(request.method, request.path):
            lock_key = self.lock_key(sid.token)
            record = yield from self.lock_and_get(lock_key, get)
        else:
            record = yield get
        state = self._loaded(request, sid, key, record)
        if state is None:  # gone, or unreadable: start afresh, and let go of the lock
            if lock_key is not None:
                self._held_locks.pop(lock_key, None)
                yield Delete(key=lock_key, node=sid.node)
            if record is not None:  # unreadable: keep the bytes aside for an operator
                yield from self.quarantine(sid, record)
            return self._new(request, had_cookie=True)
        state.lock_key = lock_key
        if self.sticky is not None:
            envelope = Envelope(
                state.session.created_at,
                state.loaded_max_inactive or self.config.max_inactive,
                self.wallclock(),
                state.baseline or b"",
            )
            self.sticky.put(
                sid.token,
                LocalCopy(
                    envelope, state.version, state.session.sid.node, generation, self.wallclock()
                ),
            )
        return state

    def _open_local(self, request: RequestInfo, sid: SessionId, key: str) -> Steps:
        """Sticky mode: the live local copy if it is current, else ``None`` (load it).

        A copy is current when the id's route is ours (no other app node served it since:
        Tomcat's JvmRouteBinderValve case) and the shared generation still matches. While
        another worker's backup of this session is pending, wait for it (bounded), so
        the store read that follows sees that worker's change.
        """
        assert self.sticky is not None
        deadline = self.clock() + 2 * self.config.operation_timeout + self.config.backup_timeout
        attempt = 0
        while True:
            copy, generation = self.sticky.current(sid.token)
            if sid.route not in (None, self.config.route):
                return None
            if copy is not None:
                return self._from_copy(request, sid, key, copy)
            if generation % 2 == 0:
                return None
            if self.clock() >= deadline:
                raise StoreUnavailable(
                    f"session {sid}: another worker's backup of it is still pending; retry"
                )
            yield Sleep(self.backoff.compute(attempt))
            attempt += 1

    def _from_copy(
        self, request: RequestInfo, sid: SessionId, key: str, copy: LocalCopy
    ) -> RequestSession:
        envelope = copy.envelope
        attributes = decode_attributes(self._serializer, envelope.attributes)
        self.stats.loaded += 1
        return self._loaded_session(
            request, sid, key, copy.node, copy.version, envelope, attributes
        )

    def _sid_from_cookie(self, header: str | None) -> SessionId | None:
        values = read_cookie_values(header, self.config.cookie_name)
        for value in values:
            sid = parse_session_id(value)
            if sid is not None and (sid.node is None or sid.node in self.nodes):
                return sid
        if values:
            self.stats.invalid_ids += 1
            log.info(
                "ignoring malformed or forged session id %r; starting a fresh session",
                values[0][:140],
            )
        return None

    def lock_and_get(self, lock_key: str, get: Get) -> Steps:
        """Take the session lock, reading the session in the same round trip.

        Returns the record (or ``None``); the lock is held, and renewed by the driver,
        until ``unlock`` (or ``release`` of the request that holds it). Raises
        ``LockTimeout`` after ``lock_timeout``.
        """
        deadline = self.clock() + self.config.lock_timeout
        attempt = 0
        owner = new_token().encode()
        while True:
            locked, record = yield Batch(
                (Add(key=lock_key, value=owner, ttl=self.lock_ttl, node=get.node), get)
            )
            for answer in (locked, record):
                if isinstance(answer, StoreError):
                    raise answer
            if locked:
                self._held_locks[lock_key] = get.node
                return record
            remaining = deadline - self.clock()
            if remaining <= 0:
                self.stats.lock_timeouts += 1
                raise LockTimeout(
                    f"session lock not acquired within lock_timeout={self.config.lock_timeout}s"
                )
            if attempt == 0:
                self.stats.lock_waits += 1
            yield Sleep(min(self.backoff.compute(attempt), remaining))
            attempt += 1

    def _loaded(
        self, request: RequestInfo, sid: SessionId, key: str, record: Record | None
    ) -> RequestSession | None:
        if record is None:
            self.stats.misses += 1
            log.debug("session %s not found (expired or unknown); starting a fresh one", sid)
            return None
        try:
            envelope = decode_envelope(record.value)
            attributes = decode_attributes(self._serializer, envelope.attributes)
        except SerializationError as exc:
            self.stats.corrupt += 1
            log.warning(
                "session %s: stored data unreadable (%s); treated as a miss and "
                "kept aside under %s",
                sid,
                exc,
                self.quarantine_key(sid.token),
            )
            return None
        self.stats.loaded += 1
        current_node = record.node or sid.node
        if current_node != sid.node:
            self.stats.relocations += 1
            log.info("session %s relocated to store node %s", sid, current_node)
        return self._loaded_session(
            request, sid, key, record.node, record.version, envelope, attributes
        )

    def _loaded_session(
        self,
        request: RequestInfo,
        sid: SessionId,
        key: str,
        node: str | None,
        version: Hashable,
        envelope: Envelope,
        attributes: dict[str, Any],
    ) -> RequestSession:
        """A loaded session under its current id: the store node it came from, our route."""
        current = sid.with_node(node or sid.node).with_route(self.route_for(key))
        session = Session(
            current,
            attributes,
            created_at=envelope.created_at,
            last_accessed_at=self.wallclock(),
            max_inactive=envelope.max_inactive,
            is_new=False,
        )
        return RequestSession(
            request,
            session,
            key,
            version=version,
            baseline=envelope.attributes,
            loaded_max_inactive=envelope.max_inactive,
            cookie_outdated=current != sid,
            had_cookie=True,
        )

    def quarantine(self, sid: SessionId, record: Record) -> Steps:
        answer = yield Batch(
            (
                Write(
                    key=self.quarantine_key(sid.token),
                    value=record.value,
                    ttl=QUARANTINE_TTL,
                    version=None,
                    node=record.node,
                ),
            )
        )
        if isinstance(answer[0], StoreError):
            log.warning("session %s: could not keep unreadable data aside: %s", sid, answer[0])

    def _new(self, request: RequestInfo, *, had_cookie: bool) -> RequestSession:
        # Never adopt a token the client sent: a fresh one defeats session fixation.
        token = new_token()
        key = self.session_key(token)
        sid = SessionId(token, self.place(key), self.route_for(key))
        now = self.wallclock()
        session = Session(
            sid,
            created_at=now,
            last_accessed_at=now,
            max_inactive=self.config.max_inactive,
            is_new=True,
        )
        return RequestSession(request, session, key, had_cookie=had_cookie)

    def _detached(self, request: RequestInfo) -> RequestSession:
        """An empty session for ignored requests: never loaded, never saved, no cookie."""
        now = self.wallclock()
        session = Session(
            SessionId(new_token()),
            created_at=now,
            last_accessed_at=now,
            max_inactive=self.config.max_inactive,
            is_new=True,
        )
        return RequestSession(request, session, None)

    # -- step 2: save ---------------------------------------------------------------------

    def save(self, state: RequestSession) -> Steps:
        """Write the session if it changed (releasing the lock in the same trip).

        Returns the ``Set-Cookie`` header values to add to the response.
        """
        if state.ignored:
            return []
        session, request = state.session, state.request
        if self.sticky is not None and (session.invalidated or session.previous_token):
            self.sticky.drop(session.previous_token or session.sid.token)
        if session.invalidated:
            self.locking.observe(request.method, request.path, modified=True)
            yield from self._delete(state, state.key)
            return [self._cookie.expire(request.scheme)] if state.had_cookie else []
        regenerated = session.previous_token is not None
        if self.sticky is not None and not regenerated:
            return self._save_local(state)
        attributes = self._serializer.dumps(self._shared(session.to_dict()))
        modified = (
            attributes != state.baseline
            or session.max_inactive != state.loaded_max_inactive
            or regenerated
        )
        if state.version is None and not session:
            modified = False  # a new session that stayed empty is not worth storing
        self.locking.observe(request.method, request.path, modified=modified)
        if not modified:
            yield from self.release(state)  # TTL was refreshed by the read already
            return self._cookies(state, resend=state.cookie_outdated)
        blob = encode_envelope(
            Envelope(session.created_at, session.max_inactive, self.wallclock(), attributes)
        )
        if len(blob) > self.config.max_session_bytes:
            self.stats.too_large += 1
            raise SessionTooLarge(len(blob), self.config.max_session_bytes)
        if regenerated:
            yield from self._write_regenerated(state, blob)
        else:  # the key follows the token: regenerate() on a new session changes it
            yield from self._write(state, self.session_key(session.sid.token), blob)
        if session.is_new:
            self.stats.created += 1
        return self._cookies(state, resend=state.cookie_outdated or session.is_new or regenerated)

    def _cookies(self, state: RequestSession, *, resend: bool) -> list[str]:
        """The ``Set-Cookie`` value for a stored session, when the client needs it.

        A browser-session cookie is sent only when its value changes (``resend``). A
        persistent one (Max-Age = the idle timeout, as Starlette's and Flask's permanent
        sessions) is sent on every response of a stored session, so that it slides with the
        store's TTL; a new session that was never stored gets none.
        """
        session = state.session
        persistent = session.persistent_cookie
        if persistent is None:
            persistent = self.config.cookie_persistent
        if persistent and state.version is None and not resend:
            return []  # never stored: nothing for the cookie to point at
        if not (resend or persistent):
            return []
        max_age = session.max_inactive if persistent else None
        return [self._cookie.set(session.id, state.request.scheme, max_age=max_age)]

    def _save_local(self, state: RequestSession) -> list[str]:
        """Sticky mode: keep the change locally; its backup is written by ``backup``."""
        assert self.sticky is not None
        session = state.session
        token = session.sid.token
        attributes = self._serializer.dumps(session.to_dict())
        modified = attributes != state.baseline or session.max_inactive != state.loaded_max_inactive
        if state.version is None and not session:
            modified = False  # a new session that stayed empty is not worth keeping
        copy = self.sticky.get(token)
        now = self.wallclock()
        cookies = self._cookies(state, resend=state.cookie_outdated)
        if not modified:
            if copy is not None and copy.dirty:  # the last backup failed: try again
                state.backup = self._store_blob(session, now)
                state.backup_generation = copy.generation
            elif copy is not None and now - copy.refreshed_at > session.max_inactive / 4:
                state.touch_backup = True  # keep the backup alive, rarely (MSM pings too)
            return cookies
        envelope = Envelope(session.created_at, session.max_inactive, now, attributes)
        size = len(encode_envelope(envelope))
        if size > self.config.max_session_bytes:
            self.stats.too_large += 1
            raise SessionTooLarge(size, self.config.max_session_bytes)
        generation = self.sticky.table.begin(token)
        refreshed = copy.refreshed_at if copy is not None else now
        self.sticky.put(
            token,
            LocalCopy(envelope, state.version, session.sid.node, generation, refreshed, dirty=True),
        )
        state.backup, state.backup_generation = self._store_blob(session, now), generation
        if session.is_new:
            self.stats.created += 1
            return self._cookies(state, resend=True)
        return cookies

    def _store_blob(self, session: Session, now: float) -> bytes:
        attributes = self._serializer.dumps(self._shared(session.to_dict()))
        return encode_envelope(Envelope(session.created_at, session.max_inactive, now, attributes))

    def backup(self, state: RequestSession) -> Steps:
        """Sticky mode: write the backup of a changed session to the store.

        Drivers run it after the response (``backup_async``) or before it, waiting at most
        ``backup_timeout``. A failed backup is logged, the change stays local and marked
        dirty, and the next request of the session tries again.

        The pending work is taken out of ``state`` now, when ``backup`` is called, not when
        its steps first run: a second call (a driver's ``finally`` after a backup that is
        still running in the background) finds nothing left to do.
        """
        if self.sticky is None or state.key is None:
            return _no_steps()
        touch, state.touch_backup = state.touch_backup, False
        blob, state.backup = state.backup, None
        if not touch and blob is None:
            return _no_steps()
        return self._backup(state, touch, blob)

    def _backup(self, state: RequestSession, touch: bool, blob: bytes | None) -> Steps:
        assert self.sticky is not None and state.key is not None
        session = state.session
        token, node = session.sid.token, session.sid.node
        if touch:
            answer = yield Batch((Touch(key=state.key, ttl=session.max_inactive, node=node),))
            copy = self.sticky.get(token)
            if answer[0] is True and copy is not None:
                copy.refreshed_at = self.wallclock()
        if blob is None:
            return
        try:
            yield from self._write(state, self.session_key(token), blob)
        except SessionShareError as exc:
            log.warning(
                "session %s: backup failed, kept locally (retried next time): %s", session.id, exc
            )
            return
        generation = self.sticky.table.settle(token, state.backup_generation)
        envelope = Envelope(
            session.created_at,
            session.max_inactive,
            self.wallclock(),
            self._serializer.dumps(session.to_dict()),  # merged, if the write had to merge
        )
        current = generation if generation == state.backup_generation + 1 else -1
        self.sticky.put(
            token,
            LocalCopy(envelope, state.version, session.sid.node, current, self.wallclock()),
        )

    def _shared(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """The attributes that go to the store (``attribute_filter``)."""
        if self._filter is None:
            return attributes
        return {k: v for k, v in attributes.items() if self._filter.search(k)}

    def _with_unlock(self, state: RequestSession, op: Write | Delete) -> Steps:
        """Run ``op`` and, if a lock is held, release it in the same round trip."""
        if state.lock_key is None:
            return (yield op)
        answer, _ = yield Batch((op, Delete(key=state.lock_key, node=state.session.sid.node)))
        self._held_locks.pop(state.lock_key, None)
        state.lock_key = None
        if isinstance(answer, StoreError):
            raise answer
        return answer

    def _write(self, state: RequestSession, key: str, blob: bytes) -> Steps:
        """Conditional write; on conflict, merge this request's changes onto the latest.

        Two requests that changed *different* attributes both survive, with or
        without locks (SPEC §3). With the same attribute, the later write wins.
        """
        session = state.session
        version = state.version
        for _ in range(MAX_MERGE_ATTEMPTS):
            node = session.sid.node
            write = Write(key=key, value=blob, ttl=session.max_inactive, version=version, node=node)
            stored = yield from self._with_unlock(state, write)
            if stored is not None:
                self.stats.writes += 1
                state.version = stored.version
                if stored.node is not None and stored.node != node:
                    self.stats.relocations += 1
                    session._relocate(session.sid.with_node(stored.node))
                    state.cookie_outdated = True
                return
            self.stats.conflicts += 1
            latest = yield Get(key=key, node=node)
            if latest is None:
                if version is None:  # a brand-new token already taken: astronomically rare
                    raise WriteConflict("new session id collided; please retry")
                log.info(
                    "session %s was invalidated or expired during the request; "
                    "its changes are dropped",
                    session.id,
                )
                return
            blob, version = self.merge(state, latest), latest.version
        raise WriteConflict(f"session {session.id}: {MAX_MERGE_ATTEMPTS} write conflicts in a row")

    def merge(self, state: RequestSession, latest: Record) -> bytes:
        """This request's attribute changes, applied onto the latest stored version."""
        session = state.session
        dumps = self._serializer.dumps
        before = decode_attributes(self._serializer, state.baseline) if state.baseline else {}
        after = self._shared(session.to_dict())
        try:
            envelope = decode_envelope(latest.value)
            merged = decode_attributes(self._serializer, envelope.attributes)
        except SerializationError:
            envelope, merged = None, {}
        for name in before.keys() - after.keys():
            merged.pop(name, None)
        for name, value in after.items():
            if name not in before or dumps(before[name]) != dumps(value):
                merged[name] = value
        session.update(merged)  # the response reflects what is stored
        created_at = envelope.created_at if envelope else session.created_at
        attributes = dumps(merged)
        return encode_envelope(
            Envelope(created_at, session.max_inactive, self.wallclock(), attributes)
        )

    def _write_regenerated(self, state: RequestSession, blob: bytes) -> Steps:
        """Store under the new token, then delete the old key (and its lock)."""
        session = state.session
        key = self.session_key(session.sid.token)
        session._relocate(session.sid.with_route(self.route_for(key)))  # the new token's owner
        write = Write(
            key=key, value=blob, ttl=session.max_inactive, version=None, node=session.sid.node
        )
        stored = yield write
        if stored is None:
            raise WriteConflict("regenerated session id collided; please retry")
        old_key = state.key
        state.key = key
        if old_key is not None and not session.is_new:
            yield from self._delete(state, old_key)
        else:
            yield from self.release(state)

    def _delete(self, state: RequestSession, key: str | None) -> Steps:
        if key is not None and state.version is not None:
            yield from self._with_unlock(state, Delete(key=key, node=state.session.sid.node))
        else:
            yield from self.release(state)

    # -- step 3: release (always) ---------------------------------------------------------

    def release(self, state: RequestSession) -> Steps:
        """Let go of the session lock if this request still holds it.

        Drivers call it in a ``finally``, so an application error never leaves a
        session locked until the lock's TTL.
        """
        if state.lock_key is not None:
            lock_key, state.lock_key = state.lock_key, None
            yield from self.unlock(lock_key, state.session.sid.node)

    def unlock(self, lock_key: str, node: str | None) -> Steps:
        """Release a lock taken with ``lock_and_get``; a failure is logged (the lease
        expires by itself), never raised."""
        self._held_locks.pop(lock_key, None)
        answer = yield Batch((Delete(key=lock_key, node=node),))
        if isinstance(answer[0], StoreError):
            log.warning("could not release lock %s (it expires by itself): %s", lock_key, answer[0])

    def renew_locks(self) -> Steps:
        """Extend every lock a request of this process still holds, in one round trip.

        Drivers run this every ``lock_renew_interval`` seconds while locks are held.
        """
        held = list(self._held_locks.items())
        if held:
            touches = tuple(Touch(key=key, ttl=self.lock_ttl, node=node) for key, node in held)
            yield Batch(touches)

    @property
    def holds_locks(self) -> bool:
        return bool(self._held_locks)

    # -- errors -----------------------------------------------------------------------------

    def error_response(self, exc: SessionShareError) -> ErrorResponse:
        """The response for a session-layer failure: 503 + Retry-After when retrying helps."""
        if exc.status_hint == 503:
            log.warning("session unavailable, answering 503: %s", exc)
            body = f"503 Service Unavailable: {exc}\n".encode()
            headers = [("Retry-After", "1")]
        else:
            log.error("session error, answering %d: %s", exc.status_hint, exc)
            body = f"{exc.status_hint} session error: {exc}\n".encode()
            headers = []
        headers += [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ]
        return ErrorResponse(exc.status_hint, headers, body)
