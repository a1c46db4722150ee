"""Django integration: ``SESSION_ENGINE = "sessionshare.django"``.

This module is what Django imports for that setting, so it exposes the engine's
``SessionStore`` (a ``SessionBase`` on sessionshare's stores). ``SessionMiddleware`` is the
optional replacement for ``django.contrib.sessions.middleware.SessionMiddleware`` that
answers 503 + Retry-After when the store is down and takes the session lock
(``locking``). Options go in ``settings.SESSIONSHARE = {...}``, below the
``SESSIONSHARE_*`` environment. The implementation is ``sessionshare.web.django``;
the user's page is docs/integrations/django.md.
"""

from __future__ import annotations

from sessionshare.web.django import (
    DjangoEngine,
    SessionMiddleware,
    SessionStore,
    get_engine,
    reset_engine,
)

__all__ = ["DjangoEngine", "SessionMiddleware", "SessionStore", "get_engine", "reset_engine"]
