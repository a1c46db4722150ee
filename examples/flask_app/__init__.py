"""The Flask example: Flask-Login, a cart and ``flash()`` on a session every node shares.

Run two nodes behind a balancer and log in on one, fill the cart on the other::

    SESSIONSHARE_STORE=memcached SESSIONSHARE_NODES="n1:127.0.0.1:11211" \\
        gunicorn -b 127.0.0.1:8001 examples.flask_app:app

No store option is written here: they come from the ``SESSIONSHARE_*`` environment
(with none at all, the memory store of one process). The cookie is Flask's ``session``.
JSON in and out; the routes are the contract all the examples share
(``GET /healthz``, ``GET /me``, ``POST /login``, ``POST /cart``, ``POST /logout``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response, flash, get_flashed_messages, jsonify, request, session
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

from sessionshare.flask import SessionShare

__all__ = ["USERS", "app", "create_app"]

#: the in-memory user list: name -> password.
USERS = {"alice": "wonderland", "bob": "builder"}
#: ``POST /cart``'s ``delay`` is capped, so a test cannot park a worker for long.
MAX_DELAY = 5.0


class User(UserMixin):
    """A Flask-Login user; the id is the user name."""

    def __init__(self, name: str) -> None:
        self.id = name


def _payload() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def create_app() -> Flask:
    """The example app; its store options come from the ``SESSIONSHARE_*`` environment."""
    app = Flask(__name__)
    node = os.environ.get("SESSIONSHARE_NODE_NAME", "node")
    SessionShare(app)  # flask.session is now the shared session
    login_manager = LoginManager(app)

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return User(user_id) if user_id in USERS else None

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", mimetype="text/plain")

    @app.get("/me")
    def me() -> Response:
        body: dict[str, Any] = {
            "user": current_user.id if current_user.is_authenticated else None,
            "cart": session.get("cart", []),
            "node": node,
        }
        messages = get_flashed_messages()  # shown once, then gone from the session
        if messages:
            body["messages"] = messages
        return jsonify(body)

    @app.post("/login")
    def login() -> tuple[Response, int]:
        data = _payload()
        name, password = data.get("username"), data.get("password")
        if not isinstance(name, str) or USERS.get(name) != password:
            return jsonify(error="bad credentials"), 401
        session.regenerate()  # type: ignore[attr-defined]  # new id, same data: fixation defence
        login_user(User(name))  # SessionShare also regenerates on user_logged_in
        flash("logged in")
        return jsonify(user=name), 200

    @app.post("/cart")
    def add_to_cart() -> Response:
        data = _payload()
        item = data.get("item")
        if isinstance(item, str | int | float) and not isinstance(item, bool):
            session["cart"] = [*session.get("cart", []), item]
        delay = data.get("delay") or 0
        if isinstance(delay, int | float) and not isinstance(delay, bool) and delay > 0:
            time.sleep(min(float(delay), MAX_DELAY))  # after the change, before the save
        return jsonify(cart=session.get("cart", []))

    @app.post("/logout")
    def logout() -> Response:
        session.clear()  # ends the stored session (cart too) and expires the cookie
        logout_user()  # after clear(), so Flask-Login can still drop a remember-me cookie
        return jsonify(user=None)

    return app


app = create_app()
