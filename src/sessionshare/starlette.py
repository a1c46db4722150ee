"""``from sessionshare.starlette import SessionMiddleware``: Starlette and FastAPI.

A drop-in for ``starlette.middleware.sessions.SessionMiddleware`` whose sessions live in
a shared store (docs/integrations/starlette.md); ``get_session`` is the FastAPI
dependency (``session: Session = Depends(get_session)``) and imports no FastAPI.

The implementation lives in ``sessionshare/web/starlette.py`` beside the other web
adapters; this module is the short import path users type.
"""

from sessionshare.core.session import Session
from sessionshare.web.starlette import SessionMiddleware, get_session

__all__ = ["Session", "SessionMiddleware", "get_session"]
