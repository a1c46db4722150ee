"""Login, a cart and logout, with sessions shared by every node (the example contract).

The session middleware is sessionshare's drop-in for Starlette's; its store comes from
the ``SESSIONSHARE_*`` environment (``SESSIONSHARE_STORE=memcached``,
``SESSIONSHARE_NODES=...``), so the same code runs on one laptop (memory store) and on a
cluster. Views take the session through the ``get_session`` dependency; plain
``request.session`` works too (``/cart`` uses it, as a Starlette app would).
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from examples.fastapi_app.users import check_password
from sessionshare.starlette import Session, SessionMiddleware, get_session

__all__ = ["app"]

#: the longest ``delay`` a cart update may ask for, in seconds.
MAX_DELAY = 5.0

#: the session as a parameter type: ``session: SessionDep`` (FastAPI's Annotated style).
SessionDep = Annotated[Session, Depends(get_session)]

app = FastAPI(title="sessionshare FastAPI example")
# Starlette's arguments keep their meaning (cookie "session", 14-day sliding Max-Age);
# the store, its nodes and the secret come from SESSIONSHARE_* variables.
app.add_middleware(SessionMiddleware)


class Credentials(BaseModel):
    username: str
    password: str


class CartItem(BaseModel):
    item: str
    delay: float | None = None


def node_name() -> str:
    return os.environ.get("SESSIONSHARE_NODE_NAME", "node")


@app.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> str:
    return "ok"


@app.get("/me")
async def me(session: SessionDep) -> dict[str, Any]:
    return {"user": session.get("user"), "cart": session.get("cart", []), "node": node_name()}


@app.post("/login", response_model=None)
async def login(credentials: Credentials, session: SessionDep) -> dict[str, Any] | JSONResponse:
    if not check_password(credentials.username, credentials.password):
        return JSONResponse({"error": "bad credentials"}, status_code=401)
    session.regenerate()  # a new id for the logged-in session (fixation); the cart stays
    session["user"] = credentials.username
    return {"user": credentials.username}


@app.post("/cart")
async def add_to_cart(body: CartItem, request: Request) -> dict[str, Any]:
    cart = request.session.setdefault("cart", [])
    cart.append(body.item)
    if body.delay:  # tests race a logout against this request
        await asyncio.sleep(min(max(body.delay, 0.0), MAX_DELAY))
    return {"cart": cart}


@app.post("/logout")
async def logout(request: Request) -> dict[str, Any]:
    request.session.clear()  # Starlette's idiom; sessionshare ends the session everywhere
    return {"user": None}


@app.websocket("/ws")
async def whoami(websocket: WebSocket, session: SessionDep) -> None:
    """The session as of the handshake (read-only on a socket): who is connected."""
    await websocket.accept()
    await websocket.send_json({"user": session.get("user")})
    await websocket.close()
