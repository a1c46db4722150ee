"""ASGI session middleware: a thin async driver over ``core.manager``.

Shaped like Starlette's own ``SessionMiddleware``: load before the app, put the
session in ``scope["session"]`` (so ``request.session`` works in Starlette and
FastAPI), save when the app sends ``http.response.start``, finish in a finally.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sessionshare.config import SessionConfig
from sessionshare.core.manager import ErrorResponse, RequestInfo, SessionManager
from sessionshare.errors import SessionShareError
from sessionshare.stores.base import AsyncStore
from sessionshare.web.drivers import AsyncDriver, resolve_config

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
    """``SessionMiddleware(app, store="memory", locking="auto", ...)``.

    Every SPEC §3 option is a keyword; ``store`` is a store's name or an ``AsyncStore``
    object, ``config`` a whole ``SessionConfig``. Keywords win over ``SESSIONSHARE_*``
    variables. WebSocket connections see the session read-only (loaded at the handshake,
    never locked or saved); the store is closed when the server's lifespan shuts down.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: SessionConfig | None = None,
        store: str | AsyncStore | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        config = resolve_config(config, store, options)
        self.driver = AsyncDriver(config, store if isinstance(store, AsyncStore) else None)

    @property
    def config(self) -> SessionConfig:
        return self.driver.config

    @property
    def store(self) -> AsyncStore:
        return self.driver.store

    @property
    def manager(self) -> SessionManager:
        return self.driver.manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        driver = self.driver
        request = RequestInfo(
            scope["method"], scope["path"], scope.get("scheme", "http"), _cookie_header(scope)
        )
        try:
            state = await driver.open(request)
        except SessionShareError as exc:
            await _send_error(send, driver.error_response(exc))
            return
        scope["session"] = state.session
        failed = False

        async def send_with_session(message: Message) -> None:
            nonlocal failed
            if failed:  # we answered with an error instead; drop the app's response
                return
            if message["type"] == "http.response.start":
                try:
                    cookies = await driver.save(state)
                except SessionShareError as exc:
                    failed = True
                    await _send_error(send, driver.error_response(exc))
                    return
                if cookies:
                    extra = [(b"set-cookie", cookie.encode("latin-1")) for cookie in cookies]
                    message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_session)
        finally:
            await driver.finish(state)  # sticky backups go now; the lock is let go

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The session as of the handshake, read-only: a socket lives too long to lock."""
        scheme = "https" if scope.get("scheme") == "wss" else "http"
        request = RequestInfo("GET", scope["path"], scheme, _cookie_header(scope), readonly=True)
        try:
            state = await self.driver.open(request)
        except SessionShareError as exc:
            log.warning("websocket %s: session unavailable, closing: %s", scope["path"], exc)
            await send({"type": "websocket.close", "code": 1011})
            return
        scope["session"] = state.session
        await self.app(scope, receive, send)

    def _closing_on_shutdown(self, send: Send) -> Send:
        """The store is closed before the app's lifespan shutdown is reported complete."""

        async def send_lifespan(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                try:
                    await self.driver.aclose()
                except Exception:
                    log.warning("closing the session store failed", exc_info=True)
            await send(message)

        return send_lifespan
