"""What the demo endpoints do, independent of the web framework serving them."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sessionshare.core.manager import SessionManager
from sessionshare.core.session import Session

__all__ = [
    "NodeInfo",
    "merge_into_session",
    "node_status",
    "render_page",
    "session_payload",
    "store_ready",
]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Who is serving: shown on every page so a user sees the balancer at work."""

    name: str
    port: int

    @classmethod
    def from_env(cls) -> NodeInfo:
        return cls(
            os.environ.get("SESSIONSHARE_NODE_NAME", "node1"),
            int(os.environ.get("SESSIONSHARE_NODE_PORT", "9001")),
        )


def session_payload(session: Session, node: NodeInfo, *, peek: bool) -> dict[str, Any]:
    """``GET /api/session``: count one more visit unless ``peek``; report the session."""
    count = session.get("count", 0)
    if not peek:
        count += 1
        session["count"] = count
    return {
        "session_id": session.id,
        "node": node.name,
        "port": node.port,
        "count": count,
        "created_at": datetime.fromtimestamp(session.created_at, UTC).isoformat(),
    }


def merge_into_session(session: Session, payload: Any) -> dict[str, Any] | None:
    """``POST /api/session``: merge a JSON object into the session; ``None`` if not an object."""
    if not isinstance(payload, dict):
        return None
    session.update(payload)
    return {"session_id": session.id, "keys": sorted(session.keys())}


def store_ready(store: Any) -> bool:
    """``GET /healthz``: a peer store (replicated, backup) is ready once it received the
    cluster's sessions; a node must not take traffic before (the balancer probes this)."""
    ready = getattr(store, "ready", None)
    return True if ready is None else bool(ready())


def node_status(
    node: NodeInfo, manager: SessionManager, store_stats: dict[str, Any]
) -> dict[str, Any]:
    """``GET /_node/status``: what the cluster status page shows for this node."""
    return {
        "name": node.name,
        "route": manager.config.route,
        "port": node.port,
        "pid": os.getpid(),
        "requests": manager.stats.requests,
        "sessions": store_stats.get("sessions", store_stats.get("items")),
        "store": store_stats,
        "manager": manager.stats.as_dict(),
    }


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sessionshare demo: {node}</title>
<style>body{{font:16px system-ui,sans-serif;margin:2rem auto;max-width:40rem}}
td,th{{padding:.3rem .8rem;text-align:left}}th{{color:#555}}
.count{{font-size:3rem;font-weight:700}}</style></head>
<body><h1>sessionshare demo</h1>
<p class="count">{count}</p><p>visits in this session</p>
<table>
<tr><th>session id</th><td><code>{session_id}</code></td></tr>
<tr><th>served by</th><td>{node} (port {port})</td></tr>
<tr><th>session created</th><td>{created_at}</td></tr>
</table>
<p><a href="/">reload</a> &middot;
<form method="post" action="/api/logout" style="display:inline">
<button>log out</button></form></p>
</body></html>
"""


def render_page(payload: dict[str, Any]) -> str:
    """``GET /``: the HTML page of the session payload."""
    return _PAGE.format(**{k: html.escape(str(v)) for k, v in payload.items()})
