"""``from sessionshare.wsgi import SessionMiddleware, get_session``: any WSGI app.

The implementation lives in ``sessionshare/web/wsgi.py`` beside the other web adapters;
this module is the short import path users type.
"""

from sessionshare.web.wsgi import ENVIRON_KEY, SessionMiddleware, get_session

__all__ = ["ENVIRON_KEY", "SessionMiddleware", "get_session"]
