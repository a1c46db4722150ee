"""Fixtures for the web tests: the test app (tests/web/apps.py) on a real server."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.servers import ManagedProcess

REPO = Path(__file__).resolve().parents[2]
SERVERS = ["uvicorn", "gunicorn"]

AppServer = Callable[..., ManagedProcess]


def server_argv(server: str) -> list[str]:
    """uvicorn serves the ASGI shell; gunicorn's threaded worker the WSGI one (threads
    share the process's memory store, so concurrent-request tests mean something)."""
    bindir = Path(sys.executable).parent
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tests.web.apps:asgi_app",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--log-level",
            "warning",
        ]
    return [
        str(bindir / "gunicorn"),
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        "1",
        "--threads",
        "4",
        "--log-level",
        "warning",
        "tests.web.apps:wsgi_app()",
    ]


@pytest.fixture(params=SERVERS)
def app_server(
    request: pytest.FixtureRequest, process_factory: Callable[..., ManagedProcess]
) -> AppServer:
    """Call with session options (``max_inactive="1s"`` …) to start the test app on a real
    server: uvicorn (ASGI) and gunicorn (WSGI), one test run each."""
    server = request.param

    def start(**options: str) -> ManagedProcess:
        env = {**os.environ, **{f"SESSIONSHARE_{k.upper()}": v for k, v in options.items()}}
        return process_factory(
            server_argv(server), name=server, env=env, cwd=REPO, ready_path="/healthz"
        )

    return start


def client(process: ManagedProcess) -> httpx.Client:
    return httpx.Client(base_url=process.url, timeout=10)
