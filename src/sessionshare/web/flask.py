"""Flask integration: ``flask.session`` is the shared, server-side session.

``SessionShare(app)`` installs a Flask ``SessionInterface`` over one ``SyncDriver``. Flask
calls it at three points of a request, and each maps onto one driver step:

- ``open_session`` (when the request context is pushed): ``driver.open``. A store or lock
  failure cannot be raised from there (Flask would answer 500), so the request gets an
  ``UnavailableSession`` and our first ``before_request`` hook answers the driver's 503 +
  ``Retry-After``. Never a silent fresh session.
- ``save_session`` (after the ``after_request`` hooks): ``driver.save``; the ``Set-Cookie``
  values go on the response. A failure turns that response into the 503.
- ``driver.finish`` (sticky backups, lock release): after the body is sent
  (``response.call_on_close``) once the save went through, since a successful save has
  already let go of the lock; otherwise (the view raised, the save failed, a
  ``direct_passthrough`` file response whose close we never see) in a ``teardown_request``
  hook, which Flask runs even when the view raises. ``finish`` is idempotent.

The object Flask hands out as ``flask.session`` (``FlaskSession``) is a view over the
sessionshare ``Session``: it delegates every mapping operation and copies nothing, so the
manager's change detection (serialized bytes) sees nested mutations too.

Flask's own settings keep their meaning (docs/integrations/flask.md has the table):
``SESSION_COOKIE_*`` feed the cookie options and ``session.permanent`` gives a session the
``PERMANENT_SESSION_LIFETIME`` idle timeout and a cookie with that ``Max-Age``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from sessionshare.extras import require

require("flask", "flask", feature="sessionshare.flask")

from flask import Flask, has_request_context, request  # noqa: E402
from flask.json.tag import TaggedJSONSerializer  # noqa: E402
from flask.sessions import NullSession, SessionInterface, SessionMixin  # noqa: E402
from werkzeug.exceptions import HTTPException  # noqa: E402
from werkzeug.wrappers import Response  # noqa: E402

from sessionshare.config import SessionConfig  # noqa: E402
from sessionshare.core.manager import ErrorResponse, RequestInfo, RequestSession  # noqa: E402
from sessionshare.errors import SerializationError, SessionShareError  # noqa: E402
from sessionshare.stores.base import Store  # noqa: E402
from sessionshare.web.drivers import SyncDriver, resolve_config  # noqa: E402

if TYPE_CHECKING:
    from flask.wrappers import Request
    from flask.wrappers import Response as FlaskResponse

__all__ = [
    "ENVIRON_KEY",
    "FlaskJSONSerializer",
    "FlaskSession",
    "SessionShare",
    "SessionShareInterface",
    "SessionUnavailable",
    "UnavailableSession",
    "flask_defaults",
]

log = logging.getLogger("sessionshare")

#: where the request's ``FlaskSession`` (or ``UnavailableSession``) is kept in the WSGI
#: environ, so the teardown and signal hooks find it without Flask's private context.
ENVIRON_KEY = "sessionshare.flask.session"

#: the key Flask's ``SessionMixin.permanent`` reads and writes (kept, for compatibility).
PERMANENT_KEY = "_permanent"

_OPTION_NAMES = tuple(f.name for f in fields(SessionConfig))


# -- configuration ----------------------------------------------------------------------


def flask_defaults(app: Flask) -> dict[str, Any]:
    """The options ``app.config`` gives: the layer below ``SESSIONSHARE_*`` env vars.

    First Flask's own cookie keys, translated; then ``app.config["SESSIONSHARE_<NAME>"]``,
    which wins over them. Flask values that mean "not set" (``SESSION_COOKIE_SECURE =
    False``, ``SESSION_COOKIE_SAMESITE = None``, ``SESSION_COOKIE_DOMAIN = None``) leave
    sessionshare's default in place: Secure over https, ``SameSite=Lax``, no Domain.
    """
    config = app.config
    defaults: dict[str, Any] = {
        "cookie_name": config.get("SESSION_COOKIE_NAME") or "session",
        "cookie_path": config.get("SESSION_COOKIE_PATH") or config.get("APPLICATION_ROOT") or "/",
        "cookie_httponly": bool(config.get("SESSION_COOKIE_HTTPONLY", True)),
    }
    if config.get("SESSION_COOKIE_DOMAIN"):
        defaults["cookie_domain"] = config["SESSION_COOKIE_DOMAIN"]
    if config.get("SESSION_COOKIE_SECURE"):
        defaults["cookie_secure"] = True
    if config.get("SESSION_COOKIE_SAMESITE"):
        defaults["cookie_samesite"] = str(config["SESSION_COOKIE_SAMESITE"]).title()
    if config.get("SESSION_COOKIE_PARTITIONED"):
        defaults["cookie_partitioned"] = True
    for name in _OPTION_NAMES:
        value = config.get(f"SESSIONSHARE_{name.upper()}")
        if value is not None:
            defaults[name] = value
    return defaults


def _flag(value: object) -> bool:
    """A boolean from ``app.config`` (``True``, or ``"false"`` read from a .env file)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _lifetime_seconds(app: Flask) -> float:
    """``PERMANENT_SESSION_LIFETIME`` in seconds (Flask accepts a timedelta or an int)."""
    lifetime = app.permanent_session_lifetime
    if isinstance(lifetime, timedelta):
        return lifetime.total_seconds()
    return float(lifetime)


# -- the session objects Flask hands out ----------------------------------------------------


class FlaskSession(SessionMixin):
    """``flask.session``: a view over the request's sessionshare ``Session``.

    Adds what Flask and its extensions expect (``permanent``, ``new``, ``modified``,
    ``accessed``) and the server-side operations a cookie session cannot have:
    ``regenerate()`` (new id, same data: call it at login) and ``invalidate()`` (end the
    session). ``clear()`` ends the session too, as clearing Flask's cookie session deletes
    its cookie: the stored session is deleted and its cookie expired; anything stored after
    ``clear()`` in the same request goes into a brand-new session under a new id.
    """

    def __init__(self, state: RequestSession, default_max_inactive: float) -> None:
        self.state = state
        self._session = state.session
        self._default_max_inactive = default_max_inactive
        self._was_permanent = bool(self._session.get(PERMANENT_KEY, False))
        self._ended = False
        #: ``finish`` will run when the response is closed (set by a successful save).
        self.finish_deferred = False
        self.accessed = False
        #: Flask's flag; settable and harmless: changes are found by comparing bytes.
        self.modified = False

    # -- what Flask asks --------------------------------------------------------------------

    @property
    def new(self) -> bool:  # type: ignore[override]
        """True for a session this request started (no stored session behind it yet)."""
        return self._session.is_new

    @property
    def sid(self) -> str:
        """The session id, as sent in the cookie (Flask-Session calls it ``sid`` too)."""
        return self._session.id

    @property
    def id(self) -> str:
        return self._session.id

    @property
    def max_inactive(self) -> float:
        """Idle timeout in seconds; a permanent session uses ``PERMANENT_SESSION_LIFETIME``."""
        return self._session.max_inactive

    @max_inactive.setter
    def max_inactive(self, seconds: float) -> None:
        self._session.max_inactive = seconds

    @property
    def ignored(self) -> bool:
        """The request matched the ``ignore`` pattern: nothing is loaded or saved."""
        return self.state.ignored

    # -- server-side operations -------------------------------------------------------------

    def regenerate(self) -> None:
        """New session id, same data (session fixation defence); the old id stops working."""
        self._session.regenerate()
        self.modified = True

    def invalidate(self) -> None:
        """End the session (logout): deleted from the store, the cookie expired."""
        self._session.clear()
        self._ended = True
        self.modified = True

    def clear(self) -> None:
        """Same as ``invalidate()``: an emptied session is an ended one (module docstring)."""
        self.invalidate()

    def prepare_save(self, permanent_lifetime: float) -> None:
        """Apply the request's end state to the ``Session`` just before the driver saves it.

        Ended or emptied: a loaded session that is empty at the end of the request is
        deleted (Flask deletes an emptied cookie session's cookie); if data was stored
        after ``clear()``, it moves to a new id. Permanent: ``PERMANENT_SESSION_LIFETIME``
        is the idle timeout and the cookie gets that ``Max-Age``; a session that stops
        being permanent goes back to ``max_inactive`` and a browser-session cookie.
        """
        session = self._session
        if self._ended or (not session.is_new and not session):
            if not session:
                session.invalidate()
                return
            session.regenerate()
        if session.get(PERMANENT_KEY, False):
            session.max_inactive = permanent_lifetime
            session.persistent_cookie = True
        elif self._was_permanent:
            session.max_inactive = self._default_max_inactive
            session.persistent_cookie = None
            self.state.cookie_outdated = True  # re-send it as a browser-session cookie

    # -- the mapping: delegated, never copied ------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return self._session[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.accessed = self.modified = True
        self._session[key] = value

    def __delitem__(self, key: str) -> None:
        self.accessed = self.modified = True
        del self._session[key]

    def __iter__(self) -> Iterator[str]:
        self.accessed = True
        return iter(self._session)

    def __len__(self) -> int:
        self.accessed = True
        return len(self._session)

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return key in self._session

    def __repr__(self) -> str:
        return f"<FlaskSession {self._session!r}>"


class SessionUnavailable(HTTPException):
    """The session could not be loaded or saved: the driver's 503 + ``Retry-After``.

    An HTTP exception, so Flask answers it like ``abort(503)``: an app's
    ``@app.errorhandler(503)`` receives it (``e.get_response()`` is the default answer,
    ``e.retry_after`` the header value to copy into a custom page).
    """

    def __init__(self, error: ErrorResponse) -> None:
        super().__init__(description=error.body.decode("utf-8", "replace").strip())
        self.code = error.status
        self.error = error
        self.retry_after = dict(error.headers).get("Retry-After")

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        return Response(self.error.body, status=self.error.status, headers=self.error.headers)


class UnavailableSession(SessionMixin):
    """``flask.session`` when the store or the lock failed while opening it.

    The first use, or our ``before_request`` hook, whichever comes first, raises
    ``SessionUnavailable`` (so code that runs before the hook, a URL value preprocessor
    say, cannot mistake it for an empty session). After that it reads as empty and drops
    writes, so ``after_request`` hooks that look at the session (Flask-Login's) do not turn
    the 503 into a 500; it is never saved.
    """

    new = False
    modified = False

    def __init__(self, error: ErrorResponse) -> None:
        self.error = error
        self.refused = False
        self.accessed = False

    def refuse(self) -> NoReturn:
        """Answer the request with the 503; from now on the session reads as empty."""
        self.refused = True
        raise SessionUnavailable(self.error)

    def __getitem__(self, key: str) -> Any:
        if self.refused:
            raise KeyError(key)
        self.refuse()

    def __setitem__(self, key: str, value: Any) -> None:
        if not self.refused:
            self.refuse()

    def __delitem__(self, key: str) -> None:
        if self.refused:
            raise KeyError(key)
        self.refuse()

    def __iter__(self) -> Iterator[str]:
        if self.refused:
            return iter(())
        self.refuse()

    def __len__(self) -> int:
        if self.refused:
            return 0
        self.refuse()


# -- the interface ---------------------------------------------------------------------------


class SessionShareInterface(SessionInterface):
    """Flask's ``SessionInterface`` over a ``SyncDriver`` (see the module docstring)."""

    pickle_based = False

    def __init__(self, driver: SyncDriver, *, regenerate_on_login: bool = True) -> None:
        self.driver = driver
        self.regenerate_on_login = regenerate_on_login

    def __repr__(self) -> str:
        return f"<SessionShareInterface {self.driver!r}>"

    # Extensions that ask the interface about the cookie get sessionshare's answer.
    def get_cookie_name(self, app: Flask) -> str:
        return self.driver.config.cookie_name

    def get_cookie_domain(self, app: Flask) -> str | None:
        return self.driver.config.cookie_domain

    def get_cookie_path(self, app: Flask) -> str:
        return self.driver.config.cookie_path

    def get_cookie_httponly(self, app: Flask) -> bool:
        return self.driver.config.cookie_httponly

    def get_cookie_samesite(self, app: Flask) -> str:
        return self.driver.config.cookie_samesite

    def regenerate(self, session: SessionMixin) -> None:
        """Flask-Session's spelling, ``app.session_interface.regenerate(session)``."""
        if isinstance(session, FlaskSession):
            session.regenerate()

    def is_null_session(self, obj: object) -> bool:
        return isinstance(obj, UnavailableSession | NullSession)

    def open_session(self, app: Flask, request: Request) -> FlaskSession | UnavailableSession:
        info = RequestInfo(
            request.method, request.path, request.scheme, request.headers.get("Cookie")
        )
        session: FlaskSession | UnavailableSession
        try:
            state = self.driver.open(info)
        except SessionShareError as exc:
            session = UnavailableSession(self.driver.error_response(exc))
        else:
            session = FlaskSession(state, self.driver.config.max_inactive)
        request.environ[ENVIRON_KEY] = session
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: FlaskResponse) -> None:
        if not isinstance(session, FlaskSession):
            return
        if session.accessed:
            response.vary.add("Cookie")
        if session.ignored:
            return
        session.prepare_save(_lifetime_seconds(app))
        try:
            cookies = self.driver.save(session.state)
        except SessionShareError as exc:
            _become_error(response, self.driver.error_response(exc))
            return  # the teardown hook lets go of anything still held
        for cookie in cookies:
            response.headers.add("Set-Cookie", cookie)
        if cookies:
            response.vary.add("Cookie")
        if not response.direct_passthrough:  # only then does Werkzeug call our close hook
            session.finish_deferred = True
            state = session.state
            response.call_on_close(lambda: self._finish(state))

    # -- hooks installed by SessionShare.init_app ---------------------------------------------

    def refuse_unavailable(self) -> None:
        """``before_request`` (first of all): answer 503 when the session failed to open."""
        session = request.environ.get(ENVIRON_KEY)
        if isinstance(session, UnavailableSession):
            session.refuse()

    def teardown(self, exc: BaseException | None) -> None:
        """``teardown_request``: the guaranteed end, when no response close took it over."""
        session = request.environ.get(ENVIRON_KEY)
        if not isinstance(session, FlaskSession):
            return
        # A successful save has let go of the lock; then only sticky backups remain, and
        # they wait for the response's close. Still holding it here means no save ran.
        if not session.finish_deferred or session.state.lock_key is not None:
            self._finish(session.state)

    def _finish(self, state: RequestSession) -> None:
        try:
            self.driver.finish(state)
        except Exception:  # the response is already decided; the lock lease expires anyway
            log.warning("finishing the session of a Flask request failed", exc_info=True)


def _become_error(response: FlaskResponse, error: ErrorResponse) -> None:
    """Turn ``response`` (Flask's, already built) into the driver's error response."""
    body = response.response
    close = getattr(body, "close", None)
    if close is not None and not isinstance(body, list | tuple):
        close()
    response.status_code = error.status
    response.headers.clear()
    for name, value in error.headers:
        response.headers.add(name, value)
    response.direct_passthrough = False
    response.set_data(error.body)


def _regenerate_on_login(sender: Flask, **extra: Any) -> None:
    """Flask-Login's ``user_logged_in``: rotate the id, keep the data (fixation defence)."""
    interface = getattr(sender, "session_interface", None)
    if not isinstance(interface, SessionShareInterface) or not interface.regenerate_on_login:
        return
    if has_request_context():
        session = request.environ.get(ENVIRON_KEY)
        if isinstance(session, FlaskSession) and not session.ignored:
            session.regenerate()


def _connect_flask_login() -> None:
    try:
        from flask_login import user_logged_in
    except ImportError:  # Flask-Login is optional
        return
    user_logged_in.connect(_regenerate_on_login)  # a module function: the weak ref holds


# -- the extension ---------------------------------------------------------------------------


class SessionShare:
    """``SessionShare(app, **options)`` or ``SessionShare(**options).init_app(app)``.

    Options (every SPEC §3 name; ``store`` a name or a ``Store`` object; ``config`` a whole
    ``SessionConfig``) resolve as: keyword > ``SESSIONSHARE_*`` env var >
    ``app.config["SESSIONSHARE_<NAME>"]`` > Flask's ``SESSION_COOKIE_*`` keys > defaults.
    ``regenerate_on_login`` (default true, or ``app.config["SESSIONSHARE_REGENERATE_ON_LOGIN"]``)
    rotates the session id on Flask-Login's ``user_logged_in`` signal.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        config: SessionConfig | None = None,
        store: str | Store | None = None,
        regenerate_on_login: bool | None = None,
        **options: Any,
    ) -> None:
        self._config = config
        self._store = store
        self._regenerate_on_login = regenerate_on_login
        self._options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> SessionShareInterface:
        """Make ``flask.session`` the shared session of ``app``; returns the interface."""
        defaults = flask_defaults(app)
        store: object = self._store
        if store is None and isinstance(defaults.get("store"), Store):
            store = defaults["store"]
        if isinstance(defaults.get("store"), Store):
            del defaults["store"]
        config = resolve_config(self._config, store, self._options, defaults=defaults)
        driver = SyncDriver(config, store if isinstance(store, Store) else None)
        regenerate = self._regenerate_on_login
        if regenerate is None:
            regenerate = _flag(app.config.get("SESSIONSHARE_REGENERATE_ON_LOGIN", True))
        interface = SessionShareInterface(driver, regenerate_on_login=regenerate)
        app.session_interface = interface
        app.extensions["sessionshare"] = interface
        # First of all before_request hooks: no other hook sees an unavailable session.
        app.before_request_funcs.setdefault(None, []).insert(0, interface.refuse_unavailable)
        app.teardown_request(interface.teardown)
        _connect_flask_login()
        return interface

    @staticmethod
    def driver(app: Flask) -> SyncDriver:
        """The driver serving ``app`` (its config, store and manager counters)."""
        interface = app.extensions["sessionshare"]
        assert isinstance(interface, SessionShareInterface)
        return interface.driver

    @staticmethod
    def close(app: Flask) -> None:
        """Close ``app``'s store (connections, replication member)."""
        SessionShare.driver(app).close()


# -- an optional serializer --------------------------------------------------------------------


class FlaskJSONSerializer:
    """Flask's tagged JSON: tuples, bytes, datetimes, UUIDs and ``Markup`` come back as such.

    The default ``json`` serializer turns a tuple into a list, as any JSON store does. Apps
    moving from Flask's cookie sessions that keep such values choose this one:
    ``serializer="sessionshare.flask.FlaskJSONSerializer"``.
    """

    def __init__(self) -> None:
        self._tagged = TaggedJSONSerializer()

    def dumps(self, value: Any) -> bytes:
        try:
            return self._tagged.dumps(value).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"session value is not serializable: {exc}") from None

    def loads(self, data: bytes) -> Any:
        try:
            return self._tagged.loads(data.decode())
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise SerializationError(f"stored bytes are not Flask tagged JSON: {exc}") from None
