"""WSGI entry point: ``gunicorn examples.django_app.wsgi:application``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")

application = get_wsgi_application()

from examples.django_app import prepare_database  # noqa: E402

prepare_database()
