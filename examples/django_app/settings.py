"""Settings of the Django example: Django's own sessions API, stored by sessionshare.

The two lines that matter are ``SESSION_ENGINE`` and the ``MIDDLEWARE`` entry
``sessionshare.django.SessionMiddleware``; everything else is a plain Django project.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
# The example runs behind a local balancer or the test client only.
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

ROOT_URLCONF = "examples.django_app.urls"
WSGI_APPLICATION = "examples.django_app.wsgi.application"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",  # only for `manage.py clearsessions`; no session table is used
    "django.contrib.messages",
]

MIDDLEWARE = [
    "sessionshare.django.SessionMiddleware",  # instead of Django's: 503 + session locks
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

# Sessions: Django's API, sessionshare's store. Store options come from SESSIONSHARE_*
# (sessionshare node / up set them); this dict is the layer below the environment.
SESSION_ENGINE = "sessionshare.django"
SESSIONSHARE: dict[str, object] = {}
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# Users live in a per-process in-memory database (examples.django_app.prepare_database):
# every app node has the same two demo users, and nothing but the sessions is shared.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # shared cache: the threads of one process (uvicorn runs sync views in threads)
        # see one database; it lives as long as the process.
        "NAME": "file:sessionshare_django_example?mode=memory&cache=shared",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"sessionshare": {"handlers": ["console"], "level": "WARNING"}},
}
