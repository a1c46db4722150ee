"""Turn middleware arguments into a config, a store and a manager (both drivers use it)."""

from __future__ import annotations

from typing import Any, TypeVar

from sessionshare.config import SessionConfig
from sessionshare.core.manager import SessionManager
from sessionshare.stores.base import AsyncStore, Store

__all__ = ["wire"]

S = TypeVar("S", Store, AsyncStore)


def wire(
    config: SessionConfig | None, store: S | None, options: dict[str, Any], create: Any
) -> tuple[SessionConfig, S, SessionManager]:
    """``config`` or keyword ``options`` (+ env vars) -> config; ``store`` or a new one."""
    if config is None:
        config = SessionConfig.load(**options)
    elif options:
        config = config.replace(**options)
    if store is None:
        store = create(config)
    assert store is not None
    manager = SessionManager(
        config, nodes=store.nodes, place=store.place, preferred_route=store.preferred_route
    )
    return config, store, manager
