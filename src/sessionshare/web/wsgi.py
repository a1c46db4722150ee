"""WSGI session middleware: a thin blocking driver over ``core.manager``.

The session is loaded before the application runs and saved when the application
calls ``start_response`` (so the ``Set-Cookie`` header can still be added, and a
non-sticky write is stored before the client sees the response). The lock, if
any, is released when the server closes the response body, even on errors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from sessionshare.config import SessionConfig
from sessionshare.core.manager import ErrorResponse, RequestInfo, RequestSession
from sessionshare.core.session import Session
from sessionshare.errors import SessionShareError
from sessionshare.process import current_pid
from sessionshare.runners import run_sync
from sessionshare.stores.base import Store
from sessionshare.stores.factory import create_store
from sessionshare.web.wiring import wire

__all__ = ["ENVIRON_KEY", "SessionMiddleware", "get_session"]

log = logging.getLogger("sessionshare")

#: where the session is put in the WSGI environ.
ENVIRON_KEY = "sessionshare.session"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def get_session(environ: dict[str, Any]) -> Session:
    """The request's session (for frameworks without an integration of their own)."""
    return environ[ENVIRON_KEY]  # type: ignore[no-any-return]


def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class SessionMiddleware:
    """``SessionMiddleware(app, store="memory", ...)``: any SPEC §3 option as a keyword."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        config: SessionConfig | None = None,
        store: Store | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        self.config, self.store, self.manager = wire(config, store, options, create_store)
        self._renewer = _LockRenewer(self)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = RequestInfo(
            environ["REQUEST_METHOD"],
            environ.get("PATH_INFO") or "/",
            environ.get("wsgi.url_scheme", "http"),
            environ.get("HTTP_COOKIE"),
        )
        try:
            state = run_sync(self.manager.open(request), self.store)
        except SessionShareError as exc:
            error = self.manager.error_response(exc)
            start_response(_status_line(error.status), error.headers)
            return [error.body]
        if state.lock_key is not None:
            self._renewer.ensure_running()
        environ[ENVIRON_KEY] = state.session
        response = _Response(self, state, start_response)
        try:
            body = self.app(environ, response.start_response)
        except BaseException:
            response.close()
            raise
        return response.wrap(body)


class _Response:
    """One response in flight: saves on ``start_response``, releases on ``close``."""

    def __init__(
        self, middleware: SessionMiddleware, state: RequestSession, start_response: StartResponse
    ) -> None:
        self._middleware = middleware
        self._state = state
        self._start_response = start_response
        self._cookies: list[str] | None = None
        self._error: ErrorResponse | None = None
        self._body: Iterable[bytes] = ()
        self._backed_up = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        manager, store = self._middleware.manager, self._middleware.store
        if self._cookies is None and self._error is None:
            try:
                self._cookies = run_sync(manager.save(self._state), store)
            except SessionShareError as exc:
                self._error = manager.error_response(exc)
            else:
                if not manager.config.backup_async:  # sticky: back up before responding
                    self.backup(wait=manager.config.backup_timeout)
        if self._error is not None:
            return self._start_response(
                _status_line(self._error.status), self._error.headers, exc_info
            )
        extra = [("Set-Cookie", cookie) for cookie in self._cookies or ()]
        return self._start_response(status, [*headers, *extra], exc_info)

    def wrap(self, body: Iterable[bytes]) -> Iterable[bytes]:
        self._body = body
        return _ClosingBody(self)

    def chunks(self) -> Iterator[bytes]:
        for chunk in self._body:
            if self._error is not None:  # the session could not be saved: say so instead
                yield self._error.body
                return
            yield chunk
        if self._error is not None and self._cookies is None:
            yield self._error.body

    def backup(self, wait: float | None = None) -> None:
        """Sticky mode: store the session's backup; after ``wait`` seconds it goes on in
        the background (``backup_timeout``). Non-sticky requests have nothing to do."""
        state = self._state
        if self._backed_up or (state.backup is None and not state.touch_backup):
            return
        self._backed_up = True
        steps, store = self._middleware.manager.backup(state), self._middleware.store
        if wait is None:
            run_sync(steps, store)
            return
        thread = threading.Thread(target=run_sync, args=(steps, store), daemon=True)
        thread.start()
        thread.join(wait)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            try:
                self.backup()  # the response is out: sticky backups go now (backup_async)
            finally:
                run_sync(self._middleware.manager.release(self._state), self._middleware.store)


class _ClosingBody:
    """The response body; the WSGI server calls ``close()`` when done (PEP 3333)."""

    def __init__(self, response: _Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        return self._response.chunks()

    def close(self) -> None:
        self._response.close()


class _LockRenewer:
    """One daemon thread per process that keeps this process's session locks alive.

    Started on the first locked request rather than at import, and again after a
    fork (gunicorn forks workers after loading the app; threads do not survive it).
    """

    def __init__(self, middleware: SessionMiddleware) -> None:
        self._middleware = middleware
        self._pid: int | None = None
        self._guard = threading.Lock()

    def ensure_running(self) -> None:
        if self._pid == current_pid():
            return
        with self._guard:
            if self._pid != current_pid():
                self._pid = current_pid()
                threading.Thread(target=self._run, name="sessionshare-locks", daemon=True).start()

    def _run(self) -> None:
        manager, store = self._middleware.manager, self._middleware.store
        while True:
            time.sleep(manager.lock_renew_interval)
            if manager.holds_locks:
                try:
                    run_sync(manager.renew_locks(), store)
                except Exception:  # keep renewing; a lost lease is logged by the store
                    log.warning("renewing session locks failed", exc_info=True)
