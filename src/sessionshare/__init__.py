"""sessionshare: shared HTTP sessions for load-balanced clusters of Python web apps.

The import surface a user needs (docs/integrations.md):

- ``sessionshare.wsgi.SessionMiddleware`` / ``sessionshare.asgi.SessionMiddleware``: any
  WSGI or ASGI app (also here as ``WSGISessionMiddleware`` / ``ASGISessionMiddleware``);
- ``sessionshare.flask.SessionShare``, ``SESSION_ENGINE = "sessionshare.django"``,
  ``sessionshare.starlette.SessionMiddleware``: the framework integrations (each needs
  its extra, e.g. ``pip install 'sessionshare[flask]'``);
- ``Session`` (what a view sees), ``SessionConfig`` (every option) and the errors.

Importing this package loads no framework and no server.
"""

from sessionshare.config import SessionConfig
from sessionshare.core.session import Session
from sessionshare.errors import (
    ConfigError,
    LockTimeout,
    NotYetAvailable,
    SerializationError,
    SessionShareError,
    SessionTooLarge,
    SignatureError,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
    WriteConflict,
)
from sessionshare.web.asgi import SessionMiddleware as ASGISessionMiddleware
from sessionshare.web.wsgi import SessionMiddleware as WSGISessionMiddleware

__version__ = "0.2.0"

__all__ = [
    "ASGISessionMiddleware",
    "ConfigError",
    "LockTimeout",
    "NotYetAvailable",
    "SerializationError",
    "Session",
    "SessionConfig",
    "SessionShareError",
    "SessionTooLarge",
    "SignatureError",
    "StoreError",
    "StoreTimeout",
    "StoreUnavailable",
    "WSGISessionMiddleware",
    "WriteConflict",
    "__version__",
]
