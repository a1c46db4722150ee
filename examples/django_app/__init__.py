"""The Django example: contrib.auth login, a cart and logout on sessionshare's engine.

Run it as ``gunicorn examples.django_app.wsgi:application`` (cwd: the repository) or
``uvicorn examples.django_app.asgi:application``; store options come from the
``SESSIONSHARE_*`` environment (none: the memory store).

Each process keeps its users in its own in-memory SQLite database, created with the
users alice / wonderland and bob / builder when the server loads the app
(``prepare_database``): two app nodes need no shared database, only the shared sessions.
"""

from __future__ import annotations

import threading

__all__ = ["USERS", "prepare_database"]

#: the demo accounts (public passwords: this is an example).
USERS = {"alice": "wonderland", "bob": "builder"}

_prepared = False
_guard = threading.Lock()


def prepare_database() -> None:
    """Create the tables and the demo users, once per process (Django must be set up)."""
    global _prepared
    with _guard:
        if _prepared:
            return
        from django.contrib.auth import get_user_model
        from django.contrib.auth.hashers import make_password
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        users = get_user_model()
        for name, password in USERS.items():
            # The same salt in every process, so every node stores the same password hash:
            # contrib.auth signs the session with it (HASH_SESSION_KEY) and flushes a session
            # whose signature does not match, which would log alice out on the other node.
            hashed = make_password(password, salt=f"sessionshareexample{name}")
            users.objects.update_or_create(username=name, defaults={"password": hashed})
        _prepared = True
