"""Every error sessionshare raises, in one family tree.

Each class carries ``status_hint``: the HTTP status a web driver answers with when the
error reaches it (the idea comes from h11's ``error_status_hint``). Store clients'
own exceptions (pymemcache, redis-py, socket errors) are translated at the store edge
into ``StoreError`` subclasses, so the session core never sees a library's exception.
"""

from __future__ import annotations


class SessionShareError(Exception):
    """Root of all sessionshare errors."""

    status_hint: int = 500


class ConfigError(SessionShareError, ValueError):
    """An option, a node list or a cluster file is wrong; raised at start-up.

    The message names the offending key or part, so the user can fix it without
    reading our code.
    """


class NotYetAvailable(ConfigError):
    """A feature that is planned but not built yet was asked for.

    Raised at start-up, never at request time: a half-built part stays behind this
    clear error instead of pretending to work.
    """


class SessionTooLarge(SessionShareError):
    """The serialized session exceeds ``max_session_bytes``; it was not stored."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"session is {size} bytes serialized, over max_session_bytes={limit}; "
            "it was not saved (the previous version is kept)"
        )
        self.size = size
        self.limit = limit


class SerializationError(SessionShareError):
    """A value cannot be serialized, or stored bytes cannot be deserialized."""


class SignatureError(SerializationError):
    """A signed payload (pickle) failed HMAC verification: never unpickled."""


class LockTimeout(SessionShareError):
    """The session lock was not acquired within ``lock_timeout``.

    Answered with 503 + Retry-After. memcached-session-manager proceeds *unlocked*
    here and loses updates (its issues #283, #263, #357); we refuse instead.
    """

    status_hint = 503


class WriteConflict(SessionShareError):
    """A conditional write kept losing against concurrent writers; bounded retries ran out."""

    status_hint = 503


class StoreError(SessionShareError):
    """A session store failed an operation."""

    status_hint = 503


class StoreTimeout(StoreError):
    """One store operation took longer than ``operation_timeout``."""


class StoreUnavailable(StoreError):
    """No store node that could hold this session answers."""
