"""ASGI session middleware: a thin async driver over ``core.manager``.

Shaped like Starlette's own ``SessionMiddleware``: load before the app, put the
session in ``scope["session"]`` (so ``request.session`` works in Starlette and
FastAPI), save when the app sends ``http.response.start``, release in a finally.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sessionshare.config import SessionConfig
from sessionshare.core.manager import ErrorResponse, RequestInfo
from sessionshare.errors import SessionShareError
from sessionshare.process import current_pid
from sessionshare.runners import run_async
from sessionshare.stores.base import AsyncStore
from sessionshare.stores.factory import create_async_store
from sessionshare.web.wiring import wire

__all__ = ["SessionMiddleware"]

log = logging.getLogger("sessionshare")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _cookie_header(scope: Scope) -> str | None:
    values = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"cookie"]
    return "; ".join(values) if values else None


async def _send_error(send: Send, error: ErrorResponse) -> None:
    headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in error.headers]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": error.body})


class SessionMiddleware:
    """``SessionMiddleware(app, store="memory", ...)``: any SPEC §3 option as a keyword."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: SessionConfig | None = None,
        store: AsyncStore | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        self.config, self.store, self.manager = wire(config, store, options, create_async_store)
        #: the lock renewer: one per running loop, started on first use, with the
        #: thread and process it was started in (``_ensure_renewer``).
        self._renewer: tuple[asyncio.Task[None], int, int] | None = None
        #: sticky backups that outlived ``backup_timeout``, kept referenced until done.
        self._background: set[asyncio.Future[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        manager, store = self.manager, self.store
        request = RequestInfo(
            scope["method"], scope["path"], scope.get("scheme", "http"), _cookie_header(scope)
        )
        try:
            state = await run_async(manager.open(request), store)
        except SessionShareError as exc:
            await _send_error(send, manager.error_response(exc))
            return
        if state.lock_key is not None:
            self._ensure_renewer()
        scope["session"] = state.session
        failed = False
        backup: asyncio.Future[None] | None = None

        async def send_with_session(message: Message) -> None:
            nonlocal failed
            if failed:  # we answered with an error instead; drop the app's response
                return
            if message["type"] == "http.response.start":
                try:
                    cookies = await run_async(manager.save(state), store)
                except SessionShareError as exc:
                    failed = True
                    await _send_error(send, manager.error_response(exc))
                    return
                if cookies:
                    extra = [(b"set-cookie", cookie.encode("latin-1")) for cookie in cookies]
                    message = {**message, "headers": [*message.get("headers", ()), *extra]}
                if not self.config.backup_async and state.backup is not None:
                    nonlocal backup  # sticky: back up first, waiting at most backup_timeout
                    backup = asyncio.ensure_future(run_async(manager.backup(state), store))
                    self._background.add(backup)
                    backup.add_done_callback(self._background.discard)
                    await asyncio.wait({backup}, timeout=self.config.backup_timeout)
            await send(message)

        try:
            await self.app(scope, receive, send_with_session)
        finally:
            if backup is None:  # sticky, backup_async: the response is out, back up now
                await run_async(manager.backup(state), store)
            await run_async(manager.release(state), store)

    def _ensure_renewer(self) -> None:
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
