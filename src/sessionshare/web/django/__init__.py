"""Django: a session engine (``SESSION_ENGINE = "sessionshare.django"``) and its middleware.

``SessionStore`` is a complete ``SessionBase`` on sessionshare's stores, keys and stored
form: a session written by Django is the record every other sessionshare adapter reads
(``<key_prefix>:s:<token>``, ``core/envelope.py`` bytes, the configured serializer), and
its key is a sessionshare id, ``<token>[-<storeNode>][.<route>]``. Each process builds one
``SyncDriver`` from ``settings.SESSIONSHARE`` (below the ``SESSIONSHARE_*`` environment,
as for every adapter) on first use and keeps it (``get_engine``).

What the engine adds to Django's contract, and why:

- **a logout is never undone.** ``save()`` is a conditional write with the version read
  at load. On conflict this request's changed keys are merged onto the latest record
  (the manager's ``_merge``, the rule of every adapter); if the record is *gone* (another
  request flushed it: logout) ``UpdateError`` is raised, Django answers
  ``SessionInterrupted`` (400) and nothing is written back.
- **expiry is Django's.** The store TTL of a save is ``get_expiry_age()`` (so
  ``SESSION_COOKIE_AGE`` and ``set_expiry()`` with seconds, ``timedelta``, ``datetime``,
  0 or ``None`` mean what Django says), counted from that save as in Django's cache
  engine; reads do not extend it (``SESSION_SAVE_EVERY_REQUEST`` does, as in Django). An
  explicit ``max_inactive`` in ``SESSIONSHARE`` (or ``SESSIONSHARE_MAX_INACTIVE``)
  replaces ``SESSION_COOKIE_AGE`` as the default age. A record older than its age is
  never served, whatever the store's clock says.
- **forged, malformed or unknown ids are no session** (Django starts a new one), never an
  exception; ``load()`` never creates a record; unreadable bytes are a logged miss,
  kept aside for an operator (the manager's quarantine), never a 500.

The async methods (``aload`` …) run the blocking store in a worker thread with
``asgiref.sync.sync_to_async``, as Django's cache engine does with its cache: one store
implementation, and Django's own ``acycle_key`` / ``aflush`` build on them.

``SessionMiddleware`` replaces ``django.contrib.sessions.middleware.SessionMiddleware``
(same cookie handling; it subclasses it) and adds what only a middleware can: 503 +
Retry-After when the store is down or a lock cannot be had, and the session lock
(``locking``; MSM semantics) for requests that will modify their session.
"""

from __future__ import annotations

from sessionshare.extras import require

require("django", "django", feature="sessionshare.django")

from sessionshare.web.django.engine import DjangoEngine, get_engine, reset_engine  # noqa: E402
from sessionshare.web.django.middleware import SessionMiddleware  # noqa: E402
from sessionshare.web.django.store import SessionStore  # noqa: E402

__all__ = ["DjangoEngine", "SessionMiddleware", "SessionStore", "get_engine", "reset_engine"]
