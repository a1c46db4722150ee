"""The field notes' benchmark app, with sessionshare: the same work with and without a session.

``/api/session`` increments ``count`` in the session beside a ~1 KiB dict (created on the
first request); ``/api/plain`` does exactly the same to a process-global dict and never
touches the session; ``/api/read`` returns the session's count without modifying it.
Options come from ``SESSIONSHARE_*`` env vars (store, nodes, locking …).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionshare.web import asgi, wsgi

PROFILE = {f"field{i:02d}": "x" * 20 for i in range(32)}  # ~1 KiB beside the counter
GLOBAL: dict[str, Any] = {}


def count_in(data: Any) -> dict[str, int]:
    """The unit of work: one counter beside a ~1 KiB dict."""
    if "profile" not in data:
        data["profile"] = dict(PROFILE)
    data["count"] = data.get("count", 0) + 1
    return {"count": data["count"]}


def asgi_app() -> asgi.SessionMiddleware:
    async def session(request: Request) -> Response:
        return JSONResponse(count_in(request.scope["session"]))

    async def plain(request: Request) -> Response:
        return JSONResponse(count_in(GLOBAL))

    async def read(request: Request) -> Response:
        return JSONResponse({"count": request.scope["session"].get("count", 0)})

    routes = [Route("/api/session", session), Route("/api/plain", plain),
              Route("/api/read", read)]  # fmt: skip
    return asgi.SessionMiddleware(Starlette(routes=routes))


def wsgi_app() -> wsgi.SessionMiddleware:
    app = Flask(__name__)

    @app.get("/api/session")
    def session() -> Any:
        return jsonify(count_in(wsgi.get_session(request.environ)))

    @app.get("/api/plain")
    def plain() -> Any:
        return jsonify(count_in(GLOBAL))

    @app.get("/api/read")
    def read() -> Any:
        return jsonify({"count": wsgi.get_session(request.environ).get("count", 0)})

    return wsgi.SessionMiddleware(app)
