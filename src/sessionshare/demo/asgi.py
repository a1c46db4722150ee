"""The demo as a Starlette application under the ASGI session middleware."""

from __future__ import annotations

from json import JSONDecodeError

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sessionshare.config import SessionConfig
from sessionshare.core.session import Session
from sessionshare.demo.views import (
    NodeInfo,
    merge_into_session,
    node_status,
    render_page,
    session_payload,
    store_ready,
)
from sessionshare.web.asgi import SessionMiddleware

__all__ = ["create_app", "create_app_from_env"]


def _session(request: Request) -> Session:
    """``request.session`` is typed as a dict by Starlette; ours is a ``Session``."""
    session: Session = request.scope["session"]
    return session


def create_app(node: NodeInfo, config: SessionConfig) -> SessionMiddleware:
    """The demo app for ``node``, wrapped in the session middleware."""

    async def page(request: Request) -> Response:
        return HTMLResponse(render_page(session_payload(_session(request), node, peek=False)))

    async def get_session(request: Request) -> Response:
        peek = request.query_params.get("peek") not in (None, "", "0")
        return JSONResponse(session_payload(_session(request), node, peek=peek))

    async def post_session(request: Request) -> Response:
        try:
            result = merge_into_session(_session(request), await request.json())
        except (JSONDecodeError, UnicodeDecodeError):
            result = None
        if result is None:
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        return JSONResponse(result)

    async def logout(request: Request) -> Response:
        _session(request).invalidate()
        return JSONResponse({"logged_out": True})

    async def healthz(request: Request) -> Response:
        if not store_ready(middleware.store):
            return PlainTextResponse("receiving sessions from the cluster", status_code=503)
        return PlainTextResponse("ok")

    async def status(request: Request) -> Response:
        return JSONResponse(node_status(node, middleware.manager, middleware.store.stats()))

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/session", get_session, methods=["GET"]),
            Route("/api/session", post_session, methods=["POST"]),
            Route("/api/logout", logout, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/_node/status", status),
        ]
    )
    middleware = SessionMiddleware(app, config=config)
    return middleware


def create_app_from_env() -> SessionMiddleware:
    """Factory for ``uvicorn --factory``: node from ``SESSIONSHARE_NODE_*``, options from env."""
    node = NodeInfo.from_env()
    return create_app(node, SessionConfig.load(route=node.name))
