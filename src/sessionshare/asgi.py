"""``from sessionshare.asgi import SessionMiddleware``: any ASGI app (``scope["session"]``).

The implementation lives in ``sessionshare/web/asgi.py`` beside the other web adapters;
this module is the short import path users type.
"""

from sessionshare.web.asgi import SessionMiddleware

__all__ = ["SessionMiddleware"]
