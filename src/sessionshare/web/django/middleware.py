"""``SessionMiddleware``: Django's, plus 503 on store failure and the session lock."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.contrib.sessions.middleware import (
    SessionMiddleware as DjangoSessionMiddleware,
)
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.http import http_date

from sessionshare.errors import (
    SessionShareError,
)
from sessionshare.web.django.engine import DjangoEngine, get_engine
from sessionshare.web.django.store import SessionStore

__all__ = ["SessionMiddleware"]

log = logging.getLogger("sessionshare.django")


def _error_response(engine: DjangoEngine, exc: SessionShareError) -> HttpResponse:
    """503 + Retry-After (or the error's status), as every sessionshare driver answers."""
    error = engine.driver.error_response(exc)
    response = HttpResponse(error.body, status=error.status)
    for name, value in error.headers:
        if name.lower() != "content-length":
            response[name] = value
    return response


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's ``SessionMiddleware`` plus 503 on store failure and the session lock.

    Use it *instead of* ``django.contrib.sessions.middleware.SessionMiddleware``, at the
    same place in ``MIDDLEWARE``. Without the lock (``locking = "none"``, or a request
    learned to be read-only) the session stays lazy: loaded at first use, as in Django.
    A request that locks reads its session with the lock, before the view.
    """

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        if not (
            isinstance(self.SessionStore, type) and issubclass(self.SessionStore, SessionStore)
        ):
            raise ImproperlyConfigured(
                "sessionshare.django.SessionMiddleware needs SESSION_ENGINE = "
                f"'sessionshare.django' (got {settings.SESSION_ENGINE!r})"
            )
        # Django builds its middleware when the server loads the app: the store starts
        # now, not at the first request, so a replicated member joins (and /healthz of
        # `sessionshare node` waits for its state transfer) before any traffic.
        self.SessionStore.engine()

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        super().process_request(request)
        session: SessionStore = request.session  # type: ignore[assignment]
        engine = session.engine()
        engine.manager.stats.requests += 1
        locking = engine.manager.locking
        if session.session_key is not None and locking.needs_lock(
            request.method or "GET", request.path
        ):
            try:
                session.lock()
            except SessionShareError as exc:
                return _error_response(engine, exc)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view that met a store failure (a lazy load) answers 503, not 500."""
        session = getattr(request, "session", None)
        if isinstance(exception, SessionShareError) and exception.status_hint == 503:
            engine = session.engine() if isinstance(session, SessionStore) else get_engine()
            return _error_response(engine, exception)
        return None

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        session = getattr(request, "session", None)
        if not isinstance(session, SessionStore):
            return super().process_response(request, response)
        engine = session.engine()
        try:
            try:
                response = super().process_response(request, response)
            except SessionShareError as exc:
                return _error_response(engine, exc)
            self._resend_changed_id(request, session, response)
            return response
        finally:
            if session.accessed or session.locked:  # a locked view that never used it: read-only
                engine.manager.locking.observe(
                    request.method or "GET", request.path, modified=session.modified
                )
            session.unlock()

    @staticmethod
    def _resend_changed_id(
        request: HttpRequest, session: SessionStore, response: HttpResponseBase
    ) -> None:
        """An unmodified session whose id changed (another node's route now) gets its
        cookie anyway, as every sessionshare driver does, without a store write."""
        sent = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        key = session.session_key
        if session.modified or key is None or sent in (None, key) or response.status_code >= 500:
            return
        if session.get_expire_at_browser_close():
            max_age, expires = None, None
        else:
            max_age = session.get_expiry_age()
            expires = http_date(time.time() + max_age)
        response.set_cookie(
            settings.SESSION_COOKIE_NAME,
            key,
            max_age=max_age,
            expires=expires,
            domain=settings.SESSION_COOKIE_DOMAIN,
            path=settings.SESSION_COOKIE_PATH,
            secure=settings.SESSION_COOKIE_SECURE or None,
            httponly=settings.SESSION_COOKIE_HTTPONLY or None,
            samesite=settings.SESSION_COOKIE_SAMESITE,
        )
