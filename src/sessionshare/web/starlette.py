"""Starlette and FastAPI: a drop-in for ``starlette.middleware.sessions.SessionMiddleware``.

The request logic is the ASGI middleware's (``web/asgi.py``); this module adds only
what a Starlette user expects of that name:

- Starlette's arguments, in Starlette's order (``SessionMiddleware(app, "secret")``
  works), translated to sessionshare options by ``starlette_options``. They are the
  ``defaults=`` layer, below the ``SESSIONSHARE_*`` environment, as Flask's
  ``app.config`` and Django's settings are: ``sessionshare up --app`` sets the store,
  the route and the secret through the environment, and its balancer routes on the
  cluster file's ``cookie_name``, so the environment must be able to win. sessionshare
  keyword options (``store="memcached"`` …) win over both, as in every middleware.
- ``request.session.clear()`` logs out: in Starlette an emptied session expires its
  cookie, which ends a signed-cookie session everywhere at once. With a shared store
  expiring the cookie is not enough (a copied cookie would still work), so a session that
  had data and is empty when the response starts is invalidated: deleted from the store.
- ``get_session``: a FastAPI dependency that imports no FastAPI.
"""

from __future__ import annotations

from typing import Any

from sessionshare.extras import require

require("starlette", "starlette", feature="sessionshare.starlette")

from starlette.datastructures import Secret  # noqa: E402
from starlette.requests import HTTPConnection  # noqa: E402

from sessionshare.config import SessionConfig  # noqa: E402
from sessionshare.core.session import Session  # noqa: E402
from sessionshare.errors import ConfigError  # noqa: E402
from sessionshare.stores.base import AsyncStore  # noqa: E402
from sessionshare.web import asgi  # noqa: E402
from sessionshare.web.asgi import ASGIApp, Message, Receive, Scope, Send  # noqa: E402
from sessionshare.web.drivers import resolve_config  # noqa: E402

__all__ = ["DEFAULT_MAX_AGE", "SessionMiddleware", "get_session", "starlette_options"]

#: Starlette's default ``max_age``: 14 days, in seconds.
DEFAULT_MAX_AGE = 14 * 24 * 60 * 60

_SAME_SITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


def starlette_options(
    *,
    secret_key: str | Secret | None = None,
    session_cookie: str = "session",
    max_age: int | None = DEFAULT_MAX_AGE,
    path: str = "/",
    same_site: str = "lax",
    https_only: bool = False,
    domain: str | None = None,
    partitioned: bool = False,
) -> dict[str, Any]:
    """Starlette's ``SessionMiddleware`` arguments as sessionshare options.

    ``max_age`` is Starlette's cookie lifetime, re-sent on every response, so it is an
    idle timeout: it becomes ``max_inactive`` (the store's TTL) with a persistent cookie.
    ``None`` means a browser-session cookie and leaves ``max_inactive`` to the config.
    Starlette marks the cookie Secure only with ``https_only``; without it, ours is Secure
    whenever the request came over https (``cookie_secure = auto``), never over http.
    """
    samesite = _SAME_SITE.get(str(same_site).lower())
    if samesite is None:
        raise ConfigError(f"same_site: expected 'lax', 'strict' or 'none', got {same_site!r}")
    options: dict[str, Any] = {
        "cookie_name": session_cookie,
        "cookie_path": path,
        "cookie_samesite": samesite,
        # https_only=False is "auto" here, as in the Flask integration: Secure whenever the
        # request came over https (stricter than Starlette, never visible over http).
        "cookie_secure": True if https_only else None,
        "cookie_httponly": True,  # Starlette's cookie is always HttpOnly
        "cookie_partitioned": partitioned,
        "cookie_persistent": max_age is not None,
    }
    if max_age is not None:
        options["max_inactive"] = max_age
    if domain is not None:
        options["cookie_domain"] = domain
    if secret_key is not None:
        options["secret"] = str(secret_key)
    return options


class SessionMiddleware(asgi.SessionMiddleware):
    """``SessionMiddleware(app, secret_key=None, session_cookie="session", ...)``.

    Starlette's signature (same order, same defaults, ``secret_key`` optional because
    the session lives in the store, not in the cookie; it becomes the ``secret`` option,
    used only to sign pickled sessions and replication frames), plus every sessionshare
    option as a keyword. ``config=`` (a whole ``SessionConfig``) replaces both the
    Starlette arguments and the environment.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str | Secret | None = None,
        session_cookie: str = "session",
        max_age: int | None = DEFAULT_MAX_AGE,
        path: str = "/",
        same_site: str = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        config: SessionConfig | None = None,
        store: str | AsyncStore | None = None,
        **options: Any,
    ) -> None:
        defaults = starlette_options(
            secret_key=secret_key,
            session_cookie=session_cookie,
            max_age=max_age,
            path=path,
            same_site=same_site,
            https_only=https_only,
            domain=domain,
            partitioned=partitioned,
        )
        resolved = resolve_config(config, store, options, defaults=defaults)
        store_object = store if isinstance(store, AsyncStore) else None
        super().__init__(_ClearEndsSession(app), config=resolved, store=store_object)


class _ClearEndsSession:
    """Around the app: a session emptied by the request is invalidated before it is saved.

    Sits between the session middleware and the app, so it sees the response start
    before the middleware saves. Only HTTP: a WebSocket's session is read-only.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = scope.get("session")
        if scope["type"] != "http" or not isinstance(session, Session) or not session:
            await self.app(scope, receive, send)  # nothing to log out of
            return

        async def send_ending_cleared(message: Message) -> None:
            if message["type"] == "http.response.start" and not session and not session.invalidated:
                session.invalidate()
            await send(message)

        await self.app(scope, receive, send_ending_cleared)


def get_session(connection: HTTPConnection) -> Session:
    """The request's (or WebSocket's) session; a FastAPI dependency as it is.

    ``session: Session = Depends(get_session)``: FastAPI passes the ``Request`` (or the
    ``WebSocket``) to a parameter annotated ``HTTPConnection``, so this module needs no
    FastAPI import and Starlette-only users need no FastAPI. Unlike ``request.session``,
    whose type is ``dict``, this is typed as sessionshare's ``Session`` (``.id``,
    ``.regenerate()``, ``.invalidate()``) and says clearly what is missing.
    """
    session = connection.scope.get("session")
    if isinstance(session, Session):
        return session
    if session is None:
        raise RuntimeError(
            "this request has no session: add the middleware, "
            "app.add_middleware(sessionshare.starlette.SessionMiddleware, ...)"
        )
    raise RuntimeError(
        f"request.session is a {type(session).__module__}.{type(session).__qualname__}, "
        "not a sessionshare session: replace starlette.middleware.sessions.SessionMiddleware "
        "with sessionshare.starlette.SessionMiddleware"
    )
