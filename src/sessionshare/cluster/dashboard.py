"""The live dashboard at ``/_cluster/``: static page + a small JSON poll twice a second.

Mounted on the balancer with ``Balancer.mount("/_cluster/", dashboard.handle)``. Short
polling rather than server-sent events because the balancer's local handlers answer
whole responses (``LocalResponse``); two small requests a second are cheap, survives a
balancer restart, and works through nginx unchanged. Assets are read from the package
(``cluster/static``) once: no CDN, the page works offline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from sessionshare.balancer.status import LocalRequest, LocalResponse, json_response
from sessionshare.cluster.status import ClusterStatus

__all__ = ["Dashboard"]

PREFIX = "/_cluster/"
_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
}
_NO_STORE = (("Cache-Control", "no-store"),)


class Dashboard:
    """Serves the page, its assets and ``/_cluster/live``; everything else is 404."""

    def __init__(
        self, status: ClusterStatus, full_status: Callable[[], Awaitable[dict[str, Any]]]
    ) -> None:
        self.status = status
        #: the balancer's ``status()`` coroutine function (the completed document).
        self._full_status = full_status
        static = resources.files("sessionshare.cluster") / "static"
        self.assets = {
            entry.name: entry.read_bytes()
            for entry in static.iterdir()
            if entry.name.rsplit(".", 1)[-1] in _TYPES
        }

    def __repr__(self) -> str:
        return f"<Dashboard {PREFIX} assets={sorted(self.assets)}>"

    async def handle(self, request: LocalRequest) -> LocalResponse:
        name = request.path.removeprefix(PREFIX) or "dashboard.html"
        if request.method not in ("GET", "HEAD"):
            return LocalResponse(405, b"method not allowed\n", headers=(("Allow", "GET"),))
        if name == "live":
            document = await self._full_status()
            return json_response(self.status.live(document))
        body = self.assets.get(name)
        if body is None:
            return LocalResponse(404, b"not found\n")
        return LocalResponse(200, body, _TYPES[name.rsplit(".", 1)[-1]], _NO_STORE)

    async def redirect(self, request: LocalRequest) -> LocalResponse:
        """``/_cluster`` → ``/_cluster/`` so relative asset URLs resolve."""
        return LocalResponse(301, b"", headers=(("Location", PREFIX),))
