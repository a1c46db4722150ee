"""The demo as a Flask application under the WSGI session middleware (for gunicorn)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request

from sessionshare.config import SessionConfig
from sessionshare.demo.views import (
    NodeInfo,
    merge_into_session,
    node_status,
    render_page,
    session_payload,
    store_ready,
)
from sessionshare.web.wsgi import SessionMiddleware, get_session

__all__ = ["create_app", "create_app_from_env"]


def create_app(node: NodeInfo, config: SessionConfig) -> SessionMiddleware:
    """The demo app for ``node``, wrapped in the session middleware."""
    app = Flask("sessionshare.demo")

    @app.get("/")
    def page() -> str:
        return render_page(session_payload(get_session(request.environ), node, peek=False))

    @app.get("/api/session")
    def read_session() -> Any:
        peek = request.args.get("peek") not in (None, "", "0")
        return jsonify(session_payload(get_session(request.environ), node, peek=peek))

    @app.post("/api/session")
    def post_session() -> Any:
        payload = request.get_json(silent=True)
        result = merge_into_session(get_session(request.environ), payload)
        if result is None:
            return jsonify({"error": "expected a JSON object"}), 400
        return jsonify(result)

    @app.post("/api/logout")
    def logout() -> Any:
        get_session(request.environ).invalidate()
        return jsonify({"logged_out": True})

    @app.get("/healthz")
    def healthz() -> Response:
        if not store_ready(middleware.store):
            return Response("receiving sessions from the cluster", 503, mimetype="text/plain")
        return Response("ok", mimetype="text/plain")

    @app.get("/_node/status")
    def status() -> Any:
        return jsonify(node_status(node, middleware.manager, middleware.store.stats()))

    middleware = SessionMiddleware(app, config=config)
    return middleware


def create_app_from_env() -> SessionMiddleware:
    """Factory for gunicorn (``'sessionshare.demo.wsgi:create_app_from_env()'``)."""
    node = NodeInfo.from_env()
    return create_app(node, SessionConfig.load(route=node.name))
