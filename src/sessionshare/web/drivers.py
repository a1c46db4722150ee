"""The session protocol bound to a store: one blocking driver, one async driver.

``core/manager.py`` decides everything and does no I/O; ``runners.py`` answers its
operations from a store. A driver holds the three things one application needs (its
config, its store, its manager) and the per-process duties around them: renewing the
locks that this process's requests hold, and running sticky backups after a response.

Every web adapter is a thin shell over one of the two:

- ``SyncDriver``: the WSGI middleware, Flask's ``SessionInterface``, Django's engine;
- ``AsyncDriver``: the ASGI middleware and Starlette's drop-in.

So a fix to how a request opens, saves or lets go of its session is made once, here or
in the manager, and every framework gets it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from typing import Any

from sessionshare.config import SessionConfig
from sessionshare.core.manager import ErrorResponse, RequestInfo, RequestSession, SessionManager
from sessionshare.errors import SessionShareError
from sessionshare.process import current_pid
from sessionshare.runners import run_async, run_sync
from sessionshare.stores.base import AsyncStore, Store
from sessionshare.stores.factory import create_async_store, create_store

__all__ = ["AsyncDriver", "SyncDriver", "live_drivers", "resolve_config"]

log = logging.getLogger("sessionshare")

#: every driver of this process, so ``sessionshare node --app`` can report a user app's
#: session counters and store health without the app exposing them itself.
_LIVE: weakref.WeakSet[SyncDriver | AsyncDriver] = weakref.WeakSet()


def live_drivers() -> list[SyncDriver | AsyncDriver]:
    """The drivers this process has built (one per app under sessionshare, usually)."""
    return list(_LIVE)


def resolve_config(
    config: SessionConfig | None,
    store: object,
    options: dict[str, Any],
    *,
    defaults: dict[str, Any] | None = None,
) -> SessionConfig:
    """The config an adapter runs with.

    ``config`` or keyword ``options`` (which win over ``SESSIONSHARE_*`` env vars). A
    ``store`` given as a name is the ``store`` option (``store="memcached"``); a store
    object is used as it is (the caller passes it to the driver). ``defaults`` sit below
    the environment: a framework's own settings (Flask's ``app.config``, Django's
    ``settings.SESSIONSHARE``), so that ``sessionshare up --app`` can still set the store.
    """
    if isinstance(store, str):
        options = {**options, "store": store}
    if config is None:
        return SessionConfig.load(defaults, **options)
    return config.replace(**options) if options else config


def _manager(config: SessionConfig, store: Store | AsyncStore) -> SessionManager:
    return SessionManager(
        config, nodes=store.nodes, place=store.place, preferred_route=store.preferred_route
    )


class SyncDriver:
    """The session protocol for blocking servers (one request per thread)."""

    def __init__(self, config: SessionConfig, store: Store | None = None) -> None:
        self.config = config
        self.store: Store = store if store is not None else create_store(config)
        self.manager = _manager(config, self.store)
        _LIVE.add(self)
        self._renewer_pid: int | None = None
        self._renewer_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"<SyncDriver {self.manager!r}>"

    def open(self, request: RequestInfo) -> RequestSession:
        """Lock (if needed) and load the request's session; raises ``SessionShareError``."""
        state = run_sync(self.manager.open(request), self.store)
        if state.lock_key is not None:
            self.keep_locks_alive()
        return state

    def save(self, state: RequestSession) -> list[str]:
        """Store the session if it changed; the ``Set-Cookie`` values to send.

        Sticky mode with ``backup_async = false`` backs up before returning, waiting at
        most ``backup_timeout`` (the rest goes on in the background).
        """
        cookies: list[str] = run_sync(self.manager.save(state), self.store)
        if not self.config.backup_async:
            self.backup(state, wait=self.config.backup_timeout)
        return cookies

    def backup(self, state: RequestSession, wait: float | None = None) -> None:
        """Sticky mode: write the pending backup (nothing to do otherwise, or twice)."""
        steps = self.manager.backup(state)
        if wait is None:
            run_sync(steps, self.store)
            return
        thread = threading.Thread(target=run_sync, args=(steps, self.store), daemon=True)
        thread.start()
        thread.join(wait)

    def finish(self, state: RequestSession) -> None:
        """After the response is out: sticky backups go now, then the lock is let go.

        Adapters call it in a ``finally``; it is safe to call more than once.
        """
        try:
            self.backup(state)
        finally:
            run_sync(self.manager.release(state), self.store)

    def error_response(self, exc: SessionShareError) -> ErrorResponse:
        return self.manager.error_response(exc)

    def close(self) -> None:
        self.store.close()

    def keep_locks_alive(self) -> None:
        """One daemon thread per process keeps this process's session locks alive.

        Started on the first locked request rather than at import, and again after a
        fork (gunicorn forks workers after loading the app; threads do not survive it).
        """
        if self._renewer_pid == current_pid():
            return
        with self._renewer_guard:
            if self._renewer_pid != current_pid():
                self._renewer_pid = current_pid()
                threading.Thread(target=self._renew, name="sessionshare-locks", daemon=True).start()

    def _renew(self) -> None:
        manager = self.manager
        while True:
            time.sleep(manager.lock_renew_interval)
            if manager.holds_locks:
                try:
                    run_sync(manager.renew_locks(), self.store)
                except Exception:  # keep renewing; a lost lease is logged by the store
                    log.warning("renewing session locks failed", exc_info=True)


class AsyncDriver:
    """The session protocol for asyncio servers (uvicorn, hypercorn …)."""

    def __init__(self, config: SessionConfig, store: AsyncStore | None = None) -> None:
        self.config = config
        self.store: AsyncStore = store if store is not None else create_async_store(config)
        self.manager = _manager(config, self.store)
        _LIVE.add(self)
        #: the lock renewer: one per running loop, started on first use, with the
        #: thread and process it was started in (``keep_locks_alive``).
        self._renewer: tuple[asyncio.Task[None], int, int] | None = None
        #: sticky backups that outlived ``backup_timeout``, kept referenced until done.
        self._background: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"<AsyncDriver {self.manager!r}>"

    async def open(self, request: RequestInfo) -> RequestSession:
        """Lock (if needed) and load the request's session; raises ``SessionShareError``."""
        state = await run_async(self.manager.open(request), self.store)
        if state.lock_key is not None:
            self.keep_locks_alive()
        return state

    async def save(self, state: RequestSession) -> list[str]:
        """Store the session if it changed; the ``Set-Cookie`` values to send."""
        cookies: list[str] = await run_async(self.manager.save(state), self.store)
        if not self.config.backup_async:  # sticky: back up first, waiting at most the timeout
            backup = asyncio.ensure_future(run_async(self.manager.backup(state), self.store))
            self._background.add(backup)
            backup.add_done_callback(self._background.discard)
            await asyncio.wait({backup}, timeout=self.config.backup_timeout)
        return cookies

    async def finish(self, state: RequestSession) -> None:
        """After the response is out: sticky backups go now, then the lock is let go."""
        try:
            await run_async(self.manager.backup(state), self.store)
        finally:
            await run_async(self.manager.release(state), self.store)

    def error_response(self, exc: SessionShareError) -> ErrorResponse:
        return self.manager.error_response(exc)

    async def aclose(self) -> None:
        await self.store.aclose()

    def keep_locks_alive(self) -> None:
        """Keep this process's session locks alive while their requests run.

        Asked on every locked request, so the usual case does not call
        ``asyncio.get_running_loop()``: on Python 3.11 that is a ``getpid()`` system
        call each time (measured: about 1 % of a node's CPU). A renewer whose loop is
        running in this thread of this process is the running loop's: a thread runs
        one loop at a time (and a forked child has another process id).
        """
        if self._renewer is not None:
            task, thread, pid = self._renewer
            if (
                thread == threading.get_ident()
                and pid == current_pid()
                and not task.done()
                and task.get_loop().is_running()
            ):
                return
        task = asyncio.get_running_loop().create_task(self._renew_forever())
        self._renewer = (task, threading.get_ident(), current_pid())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.manager.lock_renew_interval)
            if self.manager.holds_locks:
                try:
                    await run_async(self.manager.renew_locks(), self.store)
                except Exception:  # keep renewing; a lost lease is logged by the store
                    log.warning("renewing session locks failed", exc_info=True)
