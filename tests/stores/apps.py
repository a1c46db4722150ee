"""A counter app that says which worker process served it, for the sticky-mode tests.

``GET /incr`` adds one to ``count``; ``GET /peek`` reads it. Both answer
``{"id", "count", "pid"}``: the pid shows that gunicorn's workers really took turns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from sessionshare.web import wsgi


def _counter(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/healthz":
        body = b"ok"
    else:
        session = wsgi.get_session(environ)
        if path == "/incr":
            session["count"] = session.get("count", 0) + 1
        payload = {"id": session.id, "count": session.get("count", 0), "pid": os.getpid()}
        body = json.dumps(payload).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def wsgi_app() -> wsgi.SessionMiddleware:
    """For gunicorn: options come from ``SESSIONSHARE_*`` environment variables."""
    return wsgi.SessionMiddleware(_counter)
