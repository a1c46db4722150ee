"""Session ids: ``<token>[-<storeNode>][.<route>]``.

The form is memcached-session-manager's ``<id>-<memcachedNodeId>.<jvmRoute>``:
the *token* is the secret and the store key; the suffixes only say where the session
lives (store node) and which app node served it last (route, for sticky balancing).
Suffixes may change (relocation after a failover); the token never does.

Parsing is strict because the id arrives from the client: anything that is not
exactly this shape is "no session", never an exception.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace

__all__ = [
    "MAX_ID_LENGTH",
    "TOKEN_BYTES",
    "SessionId",
    "is_valid_name",
    "new_token",
    "parse_session_id",
    "route_of",
]

#: 128 random bits from ``secrets`` (OWASP asks for at least 64 bits of entropy).
TOKEN_BYTES = 16
#: SPEC §2: a cookie value longer than this is refused before any parsing.
MAX_ID_LENGTH = 128

# The token is lowercase hex: no "-" or "." so the suffix separators stay unambiguous.
_TOKEN = r"[0-9a-f]{32}"
# Node and route names: letters, digits, underscore; short (they travel in every cookie).
_NAME = r"[A-Za-z0-9_]{1,32}"
_ID_RE = re.compile(rf"(?P<token>{_TOKEN})(?:-(?P<node>{_NAME}))?(?:\.(?P<route>{_NAME}))?")
_NAME_RE = re.compile(_NAME)


def new_token() -> str:
    """A fresh 128-bit token from the OS's CSPRNG."""
    return secrets.token_hex(TOKEN_BYTES)


def is_valid_name(name: str) -> bool:
    """Whether ``name`` can be a store node id or a route (it travels inside ids)."""
    return _NAME_RE.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class SessionId:
    """A parsed session id; ``str()`` gives the cookie value back."""

    token: str
    node: str | None = None
    route: str | None = None

    @classmethod
    def new(cls, node: str | None = None, route: str | None = None) -> SessionId:
        return cls(new_token(), node, route)

    def with_node(self, node: str | None) -> SessionId:
        """The same session placed on another store node (MSM relocation)."""
        return self if node == self.node else replace(self, node=node)

    def with_route(self, route: str | None) -> SessionId:
        """The same session served by another app node (Tomcat JvmRouteBinderValve)."""
        return self if route == self.route else replace(self, route=route)

    def __str__(self) -> str:
        text = self.token
        if self.node is not None:
            text += f"-{self.node}"
        if self.route is not None:
            text += f".{self.route}"
        return text


def parse_session_id(value: str) -> SessionId | None:
    """Parse a cookie value strictly; ``None`` for anything malformed.

    Checks only the shape. Whether the store node exists is the session manager's
    question (it knows the store's nodes).
    """
    if len(value) > MAX_ID_LENGTH:
        return None
    match = _ID_RE.fullmatch(value)
    if match is None:
        return None
    return SessionId(match["token"], match["node"], match["route"])


def route_of(session_id: str) -> str | None:
    """The route suffix of a session id (for sticky balancers), or ``None``."""
    parsed = parse_session_id(session_id)
    return None if parsed is None else parsed.route
