"""A user's own app as a cluster node: ``sessionshare node --app module:app``.

The app is imported by its server (gunicorn for WSGI, uvicorn for ASGI) through the two
factories below, which read ``SESSIONSHARE_NODE_APP``. Each wraps the app in a shell that
answers the two paths the cluster needs of every node, exactly as the demo node does:

- ``GET /healthz``: 200, or 503 while a joining replication member still receives the
  cluster's sessions (the balancer and ``up`` probe it);
- ``GET /_node/status``: the node's session counters for ``sessionshare status`` and the
  dashboard, read from the session drivers the app built (``web.drivers.live_drivers``),
  so the app needs no code of its own for them.

Every other request goes to the app untouched. The session itself is the app's business:
its integration (Flask, Django, Starlette, a middleware) reads the ``SESSIONSHARE_*``
variables that ``sessionshare node`` sets.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, Literal

from sessionshare.demo.views import NodeInfo, store_ready
from sessionshare.errors import ConfigError
from sessionshare.web.drivers import live_drivers

__all__ = ["asgi_from_env", "interface_of", "load_app", "node_payload", "wsgi_from_env"]

#: how ``sessionshare node`` tells the server's worker which app to load.
APP_ENV = "SESSIONSHARE_NODE_APP"

Interface = Literal["wsgi", "asgi"]

#: HTTP requests this process passed to the app: the node's ``requests`` in the status
#: (an integration that loads sessions lazily, as Django's, opens fewer sessions than that).
_served = [0]


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` (or ``module:factory()``) from the working directory.

    The working directory goes first on ``sys.path``, as gunicorn and uvicorn do, so
    ``--app examples.flask_app:app`` works from a checkout.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"--app {spec!r}: expected module:attribute, e.g. myproject.wsgi:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--app {spec!r}: cannot import {module_name!r}: {exc}") from exc
    call = attribute.endswith("()")
    try:
        app = getattr(module, attribute.removesuffix("()"))
    except AttributeError:
        raise ConfigError(f"--app {spec!r}: {module_name} has no {attribute!r}") from None
    return app() if call else app


def interface_of(app: Any) -> Interface:
    """``asgi`` when calling the app gives a coroutine (Starlette, FastAPI, Django's
    ASGIHandler, our ASGI middleware), ``wsgi`` for any other callable."""
    if not callable(app):
        raise ConfigError(f"--app: {app!r} is not a WSGI or ASGI application")
    call = app if inspect.isroutine(app) else type(app).__call__
    return "asgi" if inspect.iscoroutinefunction(call) else "wsgi"


def node_payload() -> tuple[int, dict[str, Any]]:
    """``(status, body)`` for ``/_node/status``; ``/healthz`` uses the status alone."""
    node = NodeInfo.from_env()
    drivers = live_drivers()
    ready = all(store_ready(driver.store) for driver in drivers)
    body: dict[str, Any] = {
        "name": node.name,
        "route": os.environ.get("SESSIONSHARE_ROUTE", node.name),
        "port": node.port,
        "pid": os.getpid(),
        "requests": _served[0],
        "sessions": None,
        "app": os.environ.get(APP_ENV),
    }
    if drivers:  # one driver per app, usually; the first one speaks for the node
        stats = drivers[0].store.stats()
        manager = drivers[0].manager
        body |= {
            "route": manager.config.route,
            "sessions": stats.get("sessions", stats.get("items")),
            "store": stats,
            "manager": manager.stats.as_dict(),
        }
    return (200 if ready else 503), body


def _answer(path: str) -> tuple[int, bytes, str] | None:
    """The shell's own answer for ``path``, or ``None`` to pass the request to the app."""
    if path == "/healthz":
        status, _ = node_payload()
        text = b"ok" if status == 200 else b"receiving sessions from the cluster"
        return status, text, "text/plain"
    if path == "/_node/status":
        status, body = node_payload()
        return 200, json.dumps(body).encode(), "application/json"
    return None


def wsgi_shell(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def node(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        answer = _answer(environ.get("PATH_INFO") or "/")
        if answer is None:
            _served[0] += 1
            return app(environ, start_response)
        status, body, kind = answer
        reason = "OK" if status == 200 else "Service Unavailable"
        start_response(
            f"{status} {reason}", [("Content-Type", kind), ("Content-Length", str(len(body)))]
        )
        return [body]

    return node


def asgi_shell(app: Callable[..., Any]) -> Callable[..., Any]:
    async def node(scope: dict[str, Any], receive: Any, send: Any) -> None:
        answer = _answer(scope["path"]) if scope["type"] == "http" else None
        if answer is None:
            _served[0] += scope["type"] == "http"
            await app(scope, receive, send)
            return
        status, body, kind = answer
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return node


def _app_from_env(expected: Interface) -> Any:
    spec = os.environ[APP_ENV]
    app = load_app(spec)
    found = interface_of(app)
    if found != expected:
        raise ConfigError(f"--app {spec}: a {found.upper()} app cannot run on this server")
    return app


def wsgi_from_env() -> Callable[..., Iterable[bytes]]:
    """gunicorn's app: ``'sessionshare.cluster.app_node:wsgi_from_env()'``."""
    return wsgi_shell(_app_from_env("wsgi"))


def asgi_from_env() -> Callable[..., Any]:
    """uvicorn's factory: ``sessionshare.cluster.app_node:asgi_from_env``."""
    return asgi_shell(_app_from_env("asgi"))
