"""WSGI session middleware: a thin blocking driver over ``core.manager``.

The session is loaded before the application runs and saved when the application
calls ``start_response`` (so the ``Set-Cookie`` header can still be added, and a
non-sticky write is stored before the client sees the response). The lock, if
any, is released when the server closes the response body, even on errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from sessionshare.config import SessionConfig
from sessionshare.core.manager import ErrorResponse, RequestInfo, RequestSession, SessionManager
from sessionshare.core.session import Session
from sessionshare.errors import SessionShareError
from sessionshare.stores.base import Store
from sessionshare.web.drivers import SyncDriver, resolve_config

__all__ = ["ENVIRON_KEY", "SessionMiddleware", "get_session"]

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
    """``SessionMiddleware(app, store="memory", locking="auto", ...)``.

    Every SPEC §3 option is a keyword; ``store`` is a store's name or a ``Store`` object,
    ``config`` a whole ``SessionConfig``. Keywords win over ``SESSIONSHARE_*`` variables.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        config: SessionConfig | None = None,
        store: str | Store | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        config = resolve_config(config, store, options)
        self.driver = SyncDriver(config, store if isinstance(store, Store) else None)

    @property
    def config(self) -> SessionConfig:
        return self.driver.config

    @property
    def store(self) -> Store:
        return self.driver.store

    @property
    def manager(self) -> SessionManager:
        return self.driver.manager

    def close(self) -> None:
        """Close the store (its connections, its replication member)."""
        self.driver.close()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = RequestInfo(
            environ["REQUEST_METHOD"],
            environ.get("PATH_INFO") or "/",
            environ.get("wsgi.url_scheme", "http"),
            environ.get("HTTP_COOKIE"),
        )
        try:
            state = self.driver.open(request)
        except SessionShareError as exc:
            error = self.driver.error_response(exc)
            start_response(_status_line(error.status), error.headers)
            return [error.body]
        environ[ENVIRON_KEY] = state.session
        response = _Response(self.driver, state, start_response)
        try:
            body = self.app(environ, response.start_response)
        except BaseException:
            response.close()
            raise
        return response.wrap(body)


class _Response:
    """One response in flight: saves on ``start_response``, finishes on ``close``."""

    def __init__(
        self, driver: SyncDriver, state: RequestSession, start_response: StartResponse
    ) -> None:
        self._driver = driver
        self._state = state
        self._start_response = start_response
        self._cookies: list[str] | None = None
        self._error: ErrorResponse | None = None
        self._body: Iterable[bytes] = ()

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        if self._cookies is None and self._error is None:
            try:
                self._cookies = self._driver.save(self._state)
            except SessionShareError as exc:
                self._error = self._driver.error_response(exc)
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

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._driver.finish(self._state)  # sticky backups go now; the lock is let go


class _ClosingBody:
    """The response body; the WSGI server calls ``close()`` when done (PEP 3333)."""

    def __init__(self, response: _Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        return self._response.chunks()

    def close(self) -> None:
        self._response.close()
