"""``GET /_cluster/status`` (SPEC §6) and the hooks the cluster supervisor plugs into.

The balancer knows its nodes' URLs, health and counters but not their process ids, session
counts or the stores: the supervisor does. Rather than import the supervisor (a cycle, and
the balancer also runs alone), the balancer accepts a ``StatusHook`` that receives the
balancer's own view and returns the completed document; the dashboard page is a
``LocalHandler`` mounted at ``/_cluster/`` the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sessionshare.balancer.upstream import Node

__all__ = [
    "LocalHandler",
    "LocalRequest",
    "LocalResponse",
    "StatusHook",
    "build_status",
    "json_response",
]


@dataclass(frozen=True, slots=True)
class LocalRequest:
    """A request the balancer answers itself (``/_cluster/...``); bodies are not read."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class LocalResponse:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())


#: Answers a ``LocalRequest``; mounted with ``Balancer.mount(prefix, handler)``.
LocalHandler = Callable[[LocalRequest], Awaitable[LocalResponse]]
#: Receives the balancer's status document, returns it completed (pids, sessions, stores).
StatusHook = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def build_status(url: str, policy: str, nodes: Sequence[Node]) -> dict[str, Any]:
    """The SPEC §6 document as far as the balancer knows it; extra keys are additive."""
    return {
        "balancer": {"url": url, "policy": policy, "pid": os.getpid(), "kind": "builtin"},
        "nodes": [
            {
                "name": node.name,
                "route": node.spec.route,
                "url": node.spec.url,
                "pid": None,
                "healthy": node.healthy,
                "requests": node.requests,
                "sessions": None,
                "weight": node.weight,
                "in_flight": node.in_flight,
                "failures": node.failures,
                "latency": node.latency.summary(),
                "pool": {"idle": node.pool.idle, "opened": node.pool.opened},
            }
            for node in nodes
        ],
        "stores": [],
    }


def json_response(document: dict[str, Any], status: int = 200) -> LocalResponse:
    return LocalResponse(
        status,
        json.dumps(document, indent=2).encode(),
        "application/json",
        (("Cache-Control", "no-store"),),
    )
