"""The session object an application sees: a dict of attributes plus its metadata."""

from __future__ import annotations

from typing import Any

from sessionshare.core.ids import SessionId, new_token

__all__ = ["Session"]


class Session(dict[str, Any]):
    """The session's attributes (a ``dict``) with Tomcat's ``HttpSession`` metadata.

    A real ``dict`` subclass, so code written for a framework's own session keeps working
    (``json.dumps(session)``, ``JSONResponse(request.session)``, ``dict(session)``).

    The session does not track its own changes: the manager compares serialized
    bytes before and after the request, which also catches nested mutation such as
    ``session["cart"].append(item)`` that a ``__setitem__`` hook would miss.
    """

    __slots__ = (
        "_sid",
        "created_at",
        "invalidated",
        "is_new",
        "last_accessed_at",
        "max_inactive",
        "persistent_cookie",
        "previous_token",
    )

    def __init__(
        self,
        sid: SessionId,
        data: dict[str, Any] | None = None,
        *,
        created_at: float,
        last_accessed_at: float,
        max_inactive: float,
        is_new: bool,
    ) -> None:
        super().__init__(data or ())
        self._sid = sid
        self.created_at = created_at
        self.last_accessed_at = last_accessed_at
        #: idle timeout in seconds; may be changed per session (Tomcat setMaxInactiveInterval).
        self.max_inactive = max_inactive
        self.is_new = is_new
        self.invalidated = False
        #: the token before ``regenerate()``: the manager deletes its key on save.
        self.previous_token: str | None = None
        #: send the cookie with Max-Age = ``max_inactive`` (Flask's ``session.permanent``);
        #: ``None`` follows the ``cookie_persistent`` option.
        self.persistent_cookie: bool | None = None

    # -- identity -------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The full session id, as sent in the cookie."""
        return str(self._sid)

    @property
    def sid(self) -> SessionId:
        return self._sid

    def _relocate(self, sid: SessionId) -> None:
        """Manager only: the same token under new suffixes (store node, route)."""
        self._sid = sid

    # -- lifecycle ----------------------------------------------------------------------

    def invalidate(self) -> None:
        """End the session (logout): its data is deleted from the store and the cookie expired."""
        self.clear()
        self.invalidated = True

    def regenerate(self) -> None:
        """Give the session a new token, keeping its data (session fixation defence).

        Call it at login. The old key is deleted when the response is saved.
        """
        if self.previous_token is None and not self.is_new:
            self.previous_token = self._sid.token
        self._sid = SessionId(new_token(), self._sid.node, self._sid.route)

    def to_dict(self) -> dict[str, Any]:
        """The attributes as a plain ``dict`` (a shallow copy): what gets serialized.

        A copy, not the session itself, so that a serializer that records types (a
        signed pickle) stores plain data, never this class.
        """
        return dict(self)

    def __repr__(self) -> str:
        state = "new" if self.is_new else "loaded"
        if self.invalidated:
            state = "invalidated"
        return f"<Session {self.id} [{state}, {len(self)} attributes]>"
