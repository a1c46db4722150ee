"""``from sessionshare.flask import SessionShare``: ``flask.session`` shared by every node.

::

    app = Flask(__name__)
    app.config["SESSIONSHARE_STORE"] = "memcached"
    app.config["SESSIONSHARE_NODES"] = "n1:10.0.0.1:11211 n2:10.0.0.2:11211"
    SessionShare(app)            # or: ext = SessionShare(); ext.init_app(app)

The implementation lives in ``sessionshare/web/flask.py`` beside the other web adapters;
this module is the short import path users type (docs/integrations/flask.md).
"""

from sessionshare.web.flask import (
    FlaskJSONSerializer,
    FlaskSession,
    SessionShare,
    SessionShareInterface,
    SessionUnavailable,
)

__all__ = [
    "FlaskJSONSerializer",
    "FlaskSession",
    "SessionShare",
    "SessionShareInterface",
    "SessionUnavailable",
]
