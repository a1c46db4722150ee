"""The cluster's status (SPEC §6) and the dashboard's live data, gathered in one place.

The balancer knows node URLs and its own health view; the supervisor knows pids, states
and restarts; the nodes know their requests and sessions (``GET /_node/status``); store
servers know their items and hits. ``ClusterStatus`` polls the last two once a second in
the background (so ``/_cluster/status`` answers at once, even while a node hangs) and
completes the balancer's document through its ``StatusHook``.

Changes seen between two polls become events: relocations counted by a node, a store
node that a node's store client marks down or up (a failover).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sessionshare.cluster.events import EventLog
from sessionshare.cluster.probes import get_json
from sessionshare.cluster.store_processes import ServerStats, StoreKind
from sessionshare.cluster.supervisor import Child, Supervisor
from sessionshare.cluster.topology import HOST, PEER_STORES, Topology

__all__ = ["SPEC_KEYS", "ClusterStatus", "spec_document"]

#: The keys SPEC §6 fixes; ``sessionshare status --json`` prints exactly these.
SPEC_KEYS: dict[str, tuple[str, ...]] = {
    "balancer": ("url", "policy", "pid"),
    "nodes": ("name", "route", "url", "pid", "healthy", "requests", "sessions"),
    "stores": ("id", "kind", "address", "pid", "healthy"),
}

#: requests/s samples kept per node for the dashboard's chart (one per poll).
HISTORY = 60


def spec_document(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` cut down to SPEC §6's keys (extra keys are for the dashboard)."""
    balancer = document.get("balancer", {})
    return {
        "balancer": {key: balancer.get(key) for key in SPEC_KEYS["balancer"]},
        "nodes": [{k: n.get(k) for k in SPEC_KEYS["nodes"]} for n in document.get("nodes", [])],
        "stores": [{k: s.get(k) for k in SPEC_KEYS["stores"]} for s in document.get("stores", [])],
    }


class ClusterStatus:
    """Polls nodes and store servers; completes ``/_cluster/status``; feeds the dashboard."""

    def __init__(
        self,
        topology: Topology,
        supervisor: Supervisor,
        events: EventLog,
        store: StoreKind,
        *,
        balancer_url: str,
        balancer_kind: str,
        balancer_pid: Callable[[], int | None],
        interval: float = 1.0,
    ) -> None:
        self.topology = topology
        self.supervisor = supervisor
        self.events = events
        self.store = store
        self.balancer_url = balancer_url
        self.balancer_kind = balancer_kind
        self.balancer_pid = balancer_pid
        self.interval = interval
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.server_stats: dict[str, ServerStats | None] = {}
        self.history: dict[str, deque[tuple[float, float]]] = {
            node.name: deque(maxlen=HISTORY) for node in topology.nodes
        }
        self._counted: dict[str, tuple[float, int]] = {}
        self._store_views: dict[tuple[str, str], str] = {}
        self._polls = 0

    def __repr__(self) -> str:
        return f"<ClusterStatus {len(self.snapshots)} nodes polled, {self._polls} polls>"

    # -- polling -------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll forever (cancel to stop); one slow node never delays the others."""
        while True:
            started = time.monotonic()
            await self.poll()
            await asyncio.sleep(max(0.05, self.interval - (time.monotonic() - started)))

    async def poll(self) -> None:
        nodes = self.topology.nodes
        replies = await asyncio.gather(
            *(get_json(HOST, node.port, "/_node/status") for node in nodes),
            *(self.store.server_stats(s) for s in self.topology.store.nodes),
        )
        now = time.time()
        for node, reply in zip(nodes, replies[: len(nodes)], strict=True):
            if isinstance(reply, dict):
                self._take_snapshot(node.name, reply, now)
            else:  # down or hung: it serves nothing now (the chart shows the gap)
                self.history[node.name].append((now, 0.0))
        for server, stats in zip(self.topology.store.nodes, replies[len(nodes) :], strict=True):
            self.server_stats[server.id] = stats  # type: ignore[assignment]
        self._polls += 1

    def _take_snapshot(self, name: str, snapshot: dict[str, Any], now: float) -> None:
        previous = self.snapshots.get(name)
        self.snapshots[name] = snapshot
        requests = int(snapshot.get("requests") or 0)
        if name in self._counted:
            then, before = self._counted[name]
            # A restarted node counts from zero again: its new count is all new requests.
            delta = requests - before if requests >= before else requests
            self.history[name].append((now, round(delta / max(now - then, 1e-3), 1)))
        self._counted[name] = (now, requests)
        self._notice_changes(name, previous, snapshot)

    def _notice_changes(
        self, name: str, previous: dict[str, Any] | None, snapshot: dict[str, Any]
    ) -> None:
        before = _manager(previous).get("relocations", 0) if previous else None
        after = _manager(snapshot).get("relocations", 0)
        if before is not None and after > before:
            self.events.add(
                "relocation", name, f"{name} relocated {after - before} session(s) (new id suffix)"
            )
        for store_id, view in _store_nodes(snapshot).items():
            state = str(view.get("state", "up"))
            seen = self._store_views.get((name, store_id))
            self._store_views[(name, store_id)] = state
            if seen is None or seen == state:
                continue
            if state == "down":
                self.events.add(
                    "failover", store_id, f"{name} marks store node {store_id} down; using copies"
                )
            elif state == "up":
                self.events.add("up", store_id, f"{name} sees store node {store_id} up again")

    # -- the status document -------------------------------------------------------------

    async def complete(self, document: dict[str, Any]) -> dict[str, Any]:
        """The balancer's ``StatusHook``: fill in pids, health, sessions and the stores."""
        document["balancer"].update(
            url=self.balancer_url, pid=self.balancer_pid(), kind=self.balancer_kind
        )
        for entry in document["nodes"]:
            self._complete_node(entry)
        document["stores"] = self._stores()
        document["totals"] = self._totals(document)
        return document

    def _complete_node(self, entry: dict[str, Any]) -> None:
        name = entry["name"]
        child = self.supervisor.get(name)
        snapshot = self.snapshots.get(name, {})
        manager = _manager(snapshot)
        history = self.history.get(name, deque())
        entry["balancer_healthy"] = entry.get("healthy")
        entry["balancer_requests"] = entry.get("requests")
        entry.update(
            pid=child.pid if child else None,
            healthy=bool(child and child.healthy),
            state=child.state.value if child else "unknown",
            restarts=child.restarts if child else 0,
            requests=snapshot.get("requests"),
            sessions=_sessions(snapshot),
            relocations=manager.get("relocations"),
            lock_waits=manager.get("lock_waits"),
            rps=history[-1][1] if history else 0.0,
            history=[rate for _, rate in history],
        )

    def _stores(self) -> list[dict[str, Any]]:
        kind = self.topology.store.kind
        if self.topology.store.nodes:
            return [self._server_entry(kind, s.id, s.address) for s in self.topology.store.nodes]
        entries = []
        for node in self.topology.nodes:
            child = self.supervisor.get(node.name)
            snapshot = self.snapshots.get(node.name, {})
            port = node.replication_port if kind in PEER_STORES else node.port
            entries.append(
                {
                    "id": node.name,
                    "kind": kind,
                    "address": f"{HOST}:{port}",
                    "pid": child.pid if child else None,
                    "healthy": bool(child and child.healthy),
                    "items": _sessions(snapshot),
                    "hit_ratio": _hit_ratio(_manager(snapshot)),
                    "relocations": _manager(snapshot).get("relocations"),
                    "lock_waits": _manager(snapshot).get("lock_waits"),
                }
            )
        return entries

    def _server_entry(self, kind: str, store_id: str, address: str) -> dict[str, Any]:
        child: Child | None = self.supervisor.get(f"{kind}:{store_id}")
        stats = self.server_stats.get(store_id)
        seen_by_nodes = [
            _store_nodes(snapshot).get(store_id, {}) for snapshot in self.snapshots.values()
        ]
        return {
            "id": store_id,
            "kind": kind,
            "address": address,
            "pid": child.pid if child else None,
            "healthy": bool(child and child.healthy),
            "state": child.state.value if child else "unknown",
            "restarts": child.restarts if child else 0,
            **(stats or ServerStats()).as_dict(),
            "relocations": sum(int(v.get("relocations", 0)) for v in seen_by_nodes),
            "lock_waits": sum(int(v.get("lock_waits", 0)) for v in seen_by_nodes),
        }

    def _totals(self, document: dict[str, Any]) -> dict[str, int]:
        managers = [_manager(s) for s in self.snapshots.values()]
        return {
            "requests": sum(int(n.get("requests") or 0) for n in document["nodes"]),
            "relocations": sum(int(m.get("relocations", 0)) for m in managers),
            "lock_waits": sum(int(m.get("lock_waits", 0)) for m in managers),
            "restarts": sum(child.restarts for child in self.supervisor.children),
        }

    def live(self, document: dict[str, Any]) -> dict[str, Any]:
        """The dashboard's one request per second: status, events and the chart's data."""
        return {
            **document,
            "events": self.events.recent(40),
            "interval": self.interval,
            "topology": {"store": self.topology.store.kind, "source": self.topology.source},
        }


def _manager(snapshot: dict[str, Any] | None) -> dict[str, Any]:
    manager = (snapshot or {}).get("manager")
    return manager if isinstance(manager, dict) else {}


def _store_nodes(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-store-node view of a node's store client (memcached), if it has one."""
    store = snapshot.get("store")
    nodes = store.get("nodes") if isinstance(store, dict) else None
    return (
        {str(k): v for k, v in nodes.items() if isinstance(v, dict)}
        if isinstance(nodes, dict)
        else {}
    )


def _sessions(snapshot: dict[str, Any]) -> int | None:
    """Sessions a node holds; stores that cannot count them (memcached) report the
    sessions this node created instead, so the number still moves with traffic."""
    value = snapshot.get("sessions")
    if isinstance(value, int):
        return value
    created = _manager(snapshot).get("created")
    return created if isinstance(created, int) else None


def _hit_ratio(manager: dict[str, Any]) -> float | None:
    loaded, misses = int(manager.get("loaded", 0)), int(manager.get("misses", 0))
    return round(loaded / (loaded + misses), 3) if loaded + misses else None
