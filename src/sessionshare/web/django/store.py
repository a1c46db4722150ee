"""``SessionStore``: Django's ``SessionBase`` on a sessionshare store (package docstring)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import (
    CreateError,
    SessionBase,
    UpdateError,
)

from sessionshare.core.envelope import (
    Envelope,
    decode_attributes,
    decode_envelope,
    encode_envelope,
)
from sessionshare.core.ids import SessionId
from sessionshare.core.manager import (
    MAX_MERGE_ATTEMPTS,
    RequestInfo,
    RequestSession,
)
from sessionshare.core.operations import Get, Record, Stored
from sessionshare.core.session import Session
from sessionshare.errors import (
    SerializationError,
    SessionTooLarge,
    WriteConflict,
)
from sessionshare.runners import run_sync
from sessionshare.web.django.engine import DjangoEngine, get_engine

__all__ = ["SessionStore"]

log = logging.getLogger("sessionshare.django")

#: ``create()`` gives up after this many colliding new ids (128-bit tokens: never, unless
#: the store fails silently).
CREATE_ATTEMPTS = 10


def _in_thread(function: Callable[..., Any]) -> Callable[..., Any]:
    """The blocking store call for an async method. The store is thread-safe and the
    session is not touched by the caller meanwhile, so no thread affinity is needed."""
    return sync_to_async(function, thread_sensitive=False)


class SessionStore(SessionBase):
    """Django's session API on a sessionshare store (see the module docstring)."""

    #: tests and multi-engine setups bind a subclass to their own engine here.
    engine_override: ClassVar[DjangoEngine | None] = None

    def __init__(self, session_key: str | None = None) -> None:
        #: store version read at load: the condition of the next write (``None``: unread).
        self._version: Hashable | None = None
        #: the attribute bytes as stored: the "before" of the merge rule.
        self._baseline: bytes | None = None
        self._created_at: float | None = None
        #: (lock key, store node) while this request holds the session lock.
        self._lock: tuple[str, str | None] | None = None
        super().__init__(session_key)

    @classmethod
    def engine(cls) -> DjangoEngine:
        return cls.engine_override if cls.engine_override is not None else get_engine()

    # -- keys ---------------------------------------------------------------------------

    def _validate_session_key(self, key: str | None) -> bool:
        """Only sessionshare ids (on a node the store knows) are keys; Django turns
        anything else into ``None``: no session, a new one on save."""
        return self.engine().parse(key) is not None

    def _get_new_session_key(self) -> str:
        # No exists() round trip: 128 random bits, and save(must_create=True) is an
        # add-if-absent anyway, so a collision is a CreateError and create() retries.
        return str(self.engine().new_id())

    def _store_key(self, session_key: str | None) -> tuple[SessionId, str] | None:
        sid = self.engine().parse(session_key)
        if sid is None:
            return None
        return sid, self.engine().manager.session_key(sid.token)

    def get_session_cookie_age(self) -> int:
        age = self.engine().default_age
        return settings.SESSION_COOKIE_AGE if age is None else age

    # -- load ---------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        located = self._store_key(self.session_key)
        if located is None:
            return {}
        sid, key = located
        record = self.engine().store.get(key, node=sid.node)
        return self._accept(sid, key, record)

    def _accept(self, sid: SessionId, key: str, record: Record | None) -> dict[str, Any]:
        """The data of a record just read, or ``{}`` (and no key) for a miss."""
        engine = self.engine()
        stats = engine.manager.stats
        if record is None:
            stats.misses += 1
            return self._miss()
        try:
            envelope = decode_envelope(record.value)
            data = decode_attributes(engine.serializer, envelope.attributes)
        except SerializationError as exc:
            stats.corrupt += 1
            log.warning(
                "session %s: stored data unreadable (%s); treated as a miss and kept aside "
                "under %s",
                sid,
                exc,
                engine.manager.quarantine_key(sid.token),
            )
            run_sync(engine.manager.quarantine(sid, record), engine.store)
            return self._miss()
        if envelope.written_at + envelope.max_inactive <= time.time():
            stats.misses += 1  # expired by age, whatever the store's clock said
            return self._miss()
        stats.loaded += 1
        self._version, self._baseline = record.version, envelope.attributes
        self._created_at = envelope.created_at
        current = sid.with_node(record.node or sid.node).with_route(engine.route(key))
        if current.node != sid.node:
            stats.relocations += 1
            self.modified = True  # the cookie must name the node that holds it now
        self._session_key = str(current)
        return data

    def _miss(self) -> dict[str, Any]:
        self._session_key = None
        self._version = self._baseline = self._created_at = None
        return {}

    def exists(self, session_key: str | None) -> bool:
        located = self._store_key(session_key)
        if located is None:
            return False
        sid, key = located
        return self.engine().store.get(key, node=sid.node) is not None

    # -- save ---------------------------------------------------------------------------

    def create(self) -> None:
        for _ in range(CREATE_ATTEMPTS):
            self._session_key = self._get_new_session_key()
            self._version = self._baseline = None
            self._created_at = time.time()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise WriteConflict(f"no free session id in {CREATE_ATTEMPTS} attempts; is the store sane?")

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        located = self._store_key(self.session_key)
        assert located is not None  # session_key is validated on assignment
        sid, key = located
        engine = self.engine()
        data = self._get_session(no_load=must_create)
        age = self.get_expiry_age()
        if age <= 0:  # set_expiry() in the past: the session is over, not stored
            if not must_create:
                engine.store.delete(key, node=sid.node)
            return None
        now = time.time()
        attributes = engine.serializer.dumps(data)
        created_at = self._created_at if self._created_at is not None else now
        blob = encode_envelope(Envelope(created_at, float(age), now, attributes))
        if len(blob) > engine.config.max_session_bytes:
            engine.manager.stats.too_large += 1
            raise SessionTooLarge(len(blob), engine.config.max_session_bytes)
        if must_create:
            stored = engine.store.write(key, blob, ttl=age, version=None, node=sid.node)
            if stored is None:
                raise CreateError
            engine.manager.stats.created += 1
        else:
            stored, blob = self._write_over(sid, key, blob, data, float(age))
        engine.manager.stats.writes += 1
        self._version = stored.version
        self._baseline = decode_envelope(blob).attributes
        if stored.node is not None and stored.node != sid.node:
            engine.manager.stats.relocations += 1
            self._session_key = str(sid.with_node(stored.node))
        return None

    def _write_over(
        self, sid: SessionId, key: str, blob: bytes, data: dict[str, Any], age: float
    ) -> tuple[Stored, bytes]:
        """Write an existing session: conditional on the version read, merging on conflict.

        Raises ``UpdateError`` when the record is gone: another request ended the session,
        and writing it back would undo that logout.
        """
        engine = self.engine()
        store, manager = engine.store, engine.manager
        replace = self._version is None  # never read (clear() then save()): replace it
        version = self._version
        if replace:
            latest = store.get(key, node=sid.node)
            if latest is None:
                raise UpdateError
            version = latest.version
        for _ in range(MAX_MERGE_ATTEMPTS):
            stored = store.write(key, blob, ttl=age, version=version, node=sid.node)
            if stored is not None:
                return stored, blob
            manager.stats.conflicts += 1
            latest = store.get(key, node=sid.node)
            if latest is None:
                log.info(
                    "session %s was ended by another request during this one; its changes "
                    "are not written back (UpdateError)",
                    sid,
                )
                raise UpdateError
            if not replace:  # this request's changes onto the latest: the manager's rule
                state = self._merge_state(sid, key, data, age)
                blob = manager.merge(state, latest)
                data.clear()  # this request goes on with what is stored
                data.update(state.session)
            version = latest.version
        raise WriteConflict(f"session {sid}: {MAX_MERGE_ATTEMPTS} write conflicts in a row")

    def _merge_state(
        self, sid: SessionId, key: str, data: dict[str, Any], age: float
    ) -> RequestSession:
        """This session as the manager's merge sees it (the merge updates its copy)."""
        now = time.time()
        created_at = self._created_at if self._created_at is not None else now
        session = Session(
            sid, data, created_at=created_at, last_accessed_at=now, max_inactive=age, is_new=False
        )
        return RequestSession(
            RequestInfo("POST", "/"), session, key, version=self._version, baseline=self._baseline
        )

    # -- delete -------------------------------------------------------------------------

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        located = self._store_key(session_key)
        if located is None:
            return
        sid, key = located
        self.engine().store.delete(key, node=sid.node)
        if session_key == self.session_key:
            self._version = self._baseline = None

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: every record carries its store TTL (``clearsessions`` is a no-op)."""

    @classmethod
    async def aclear_expired(cls) -> None:
        """Nothing to do, as ``clear_expired``."""

    # -- async: the same methods in a worker thread -------------------------------------

    async def aload(self) -> dict[str, Any]:
        return await _in_thread(self.load)()  # type: ignore[no-any-return]

    async def aexists(self, session_key: str | None) -> bool:
        return await _in_thread(self.exists)(session_key)  # type: ignore[no-any-return]

    async def acreate(self) -> None:
        await _in_thread(self.create)()

    async def asave(self, must_create: bool = False) -> None:
        await _in_thread(self.save)(must_create)

    async def adelete(self, session_key: str | None = None) -> None:
        await _in_thread(self.delete)(session_key)

    # -- the session lock (SessionMiddleware) -------------------------------------------

    def lock(self) -> None:
        """Take the session lock and read the session in the same round trip.

        Raises ``LockTimeout`` / ``StoreError`` (the middleware answers 503). A session
        that turns out to be gone is let go of at once.
        """
        located = self._store_key(self.session_key)
        if located is None or self._lock is not None:
            return
        sid, key = located
        engine = self.engine()
        lock_key = engine.manager.lock_key(sid.token)
        get = Get(key=key, node=sid.node)
        record = run_sync(engine.manager.lock_and_get(lock_key, get), engine.store)
        self._lock = (lock_key, sid.node)
        engine.driver.keep_locks_alive()  # a long request keeps its lease
        self._session_cache = self._accept(sid, key, record)
        if self.session_key is None:
            self.unlock()

    @property
    def locked(self) -> bool:
        """Whether this request holds the session lock."""
        return self._lock is not None

    def unlock(self) -> None:
        """Let go of the lock (idempotent); a failure is logged, the lease expires alone."""
        if self._lock is None:
            return
        (lock_key, node), self._lock = self._lock, None
        engine = self.engine()
        run_sync(engine.manager.unlock(lock_key, node), engine.store)
