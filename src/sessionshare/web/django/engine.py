"""One process's sessionshare machinery for Django, built once from the settings."""

from __future__ import annotations

import logging
import os
import threading

from django.conf import settings

from sessionshare.config import SessionConfig
from sessionshare.core.ids import SessionId, new_token, parse_session_id
from sessionshare.core.manager import (
    SessionManager,
)
from sessionshare.core.serializers import Serializer, make_serializer
from sessionshare.errors import (
    NotYetAvailable,
)
from sessionshare.stores.base import Store
from sessionshare.web.drivers import SyncDriver, resolve_config

__all__ = ["DjangoEngine", "get_engine", "reset_engine"]

log = logging.getLogger("sessionshare.django")


class DjangoEngine:
    """One process's session machinery for Django: the driver and Django's default age."""

    def __init__(self, driver: SyncDriver, *, default_age: int | None = None) -> None:
        if driver.config.sticky:
            raise NotYetAvailable(
                "sticky = true is not available with the Django engine yet (Django loads "
                "sessions itself, so there is no local copy to keep); use sticky = false"
            )
        self.driver = driver
        #: the default expiry age; ``None``: Django's ``SESSION_COOKIE_AGE``.
        self.default_age = default_age
        self.serializer: Serializer = make_serializer(
            driver.config.serializer, driver.config.secret
        )

    @classmethod
    def from_config(cls, config: SessionConfig, store: Store | None = None) -> DjangoEngine:
        """An engine on ``config``; ``max_inactive`` is then the default age."""
        return cls(SyncDriver(config, store), default_age=int(config.max_inactive))

    @classmethod
    def from_settings(cls) -> DjangoEngine:
        """The engine ``settings.SESSIONSHARE`` (below ``SESSIONSHARE_*``) describes."""
        options = dict(getattr(settings, "SESSIONSHARE", None) or {})
        config = resolve_config(None, None, {}, defaults=options)
        explicit = "max_inactive" in options or "SESSIONSHARE_MAX_INACTIVE" in os.environ
        return cls(SyncDriver(config), default_age=int(config.max_inactive) if explicit else None)

    def __repr__(self) -> str:
        return f"<DjangoEngine {self.driver!r}>"

    @property
    def config(self) -> SessionConfig:
        return self.driver.config

    @property
    def store(self) -> Store:
        return self.driver.store

    @property
    def manager(self) -> SessionManager:
        return self.driver.manager

    def parse(self, session_key: object) -> SessionId | None:
        """The id in a client's cookie, or ``None`` when it is not one of ours."""
        if not isinstance(session_key, str):
            return None
        sid = parse_session_id(session_key)
        if sid is None or (sid.node is not None and sid.node not in self.store.nodes):
            return None
        return sid

    def new_id(self) -> SessionId:
        """A fresh id, placed on a store node, carrying this node's route."""
        token = new_token()
        key = self.manager.session_key(token)
        return SessionId(token, self.store.place(key), self.route(key))

    def route(self, key: str) -> str | None:
        # The manager's rule (config route, or the store's owner with a peer store).
        return self.manager.route_for(key)

    def close(self) -> None:
        self.driver.close()


_ENGINE: DjangoEngine | None = None
_ENGINE_GUARD = threading.Lock()


def get_engine() -> DjangoEngine:
    """This process's engine, built from the settings on first use (not at import:
    ``sessionshare node --app`` imports the app in a process that serves nothing)."""
    global _ENGINE
    engine = _ENGINE
    if engine is None:
        with _ENGINE_GUARD:
            if _ENGINE is None:
                _ENGINE = DjangoEngine.from_settings()
            engine = _ENGINE
    return engine


def reset_engine() -> None:
    """Close and forget the engine (tests, or after changing ``settings.SESSIONSHARE``)."""
    global _ENGINE
    with _ENGINE_GUARD:
        engine, _ENGINE = _ENGINE, None
    if engine is not None:
        engine.close()
