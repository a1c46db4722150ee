"""A test application exposing every session behaviour, for uvicorn and gunicorn.

The actions live once in ``act``; the Starlette and Flask shells only route to it,
the same way the demo app is built. Options come from ``SESSIONSHARE_*`` env vars.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from flask import Flask, jsonify, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionshare.core.manager import SessionManager
from sessionshare.core.session import Session
from sessionshare.web import asgi, wsgi


def act(
    path: str, session: Session, params: dict[str, str], body: Any, manager: SessionManager
) -> tuple[int, dict[str, Any]]:
    """Do what ``path`` says to ``session``; the answer always shows the session."""
    if path == "/set" and isinstance(body, dict):
        session.update(body)
    elif path == "/append":
        session[params["key"]].append(params["value"])  # nested mutation, no __setitem__
    elif path == "/regenerate":
        session.regenerate()
    elif path == "/invalidate":
        session.invalidate()
    elif path == "/big":
        session["blob"] = "x" * int(params["size"])
    elif path == "/incr":
        session["count"] = session.get("count", 0) + 1
    elif path.startswith("/static/"):
        session["touched_by_static"] = True  # must never be saved
    elif path == "/stats":
        return 200, manager.stats.as_dict()
    return 200, {"id": session.id, "is_new": session.is_new, "data": dict(session)}


def asgi_app() -> asgi.SessionMiddleware:
    async def endpoint(request: Request) -> Response:
        body = await request.json() if request.method == "POST" and await request.body() else None
        if "sleep" in request.query_params:  # hold the session (and its lock) for a while
            await asyncio.sleep(float(request.query_params["sleep"]))
        status, payload = act(
            request.url.path, request.session, dict(request.query_params), body, middleware.manager
        )
        return JSONResponse(payload, status_code=status)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
    middleware = asgi.SessionMiddleware(app)
    return middleware


def wsgi_app() -> wsgi.SessionMiddleware:
    app = Flask(__name__, static_folder=None)  # /static/... must reach our endpoint

    @app.route("/<path:path>", methods=["GET", "POST"])
    def endpoint(path: str) -> Any:
        if "sleep" in request.args:
            time.sleep(float(request.args["sleep"]))
        status, payload = act(
            request.path,
            wsgi.get_session(request.environ),
            dict(request.args),
            request.get_json(silent=True),
            middleware.manager,
        )
        return jsonify(payload), status

    middleware = wsgi.SessionMiddleware(app)
    return middleware
