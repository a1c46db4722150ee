"""App nodes as the balancer tracks them: health, counters, latency and a keep-alive pool.

The pool is nginx's ``keepalive N`` in an upstream block: idle HTTP/1.1 connections are
kept per node and reused, so a proxied request costs no TCP handshake. It is hand-written
because it is small and its reuse rules are the balancer's own (drop a connection the
node may be closing, never reuse one whose response was not read to the end).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from sessionshare.balancer.channel import Channel
from sessionshare.balancer.config import BalancerConfig, NodeSpec
from sessionshare.balancer.health import ActiveHealth, PassiveHealth

__all__ = ["Latency", "Node", "NodePool"]

#: A node's response head may carry big cookies; past this it is a broken node.
RESPONSE_HEAD_LIMIT = 128 * 1024


class NodePool:
    """Idle keep-alive connections to one node, most recently used first."""

    def __init__(self, spec: NodeSpec, size: int, idle_timeout: float) -> None:
        self.spec = spec
        self.size = size
        self.idle_timeout = idle_timeout
        self._idle: deque[Channel] = deque()
        self.opened = 0  # connections ever opened; tests read it to prove reuse

    async def acquire(self, timeout: float) -> Channel:
        """An idle live connection, or a new one (``OSError`` / ``TimeoutError`` if refused)."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.is_closing() or now - conn.idle_since > self.idle_timeout:
                conn.close()
                continue
            conn.reused = True
            conn.expect_response()
            return conn
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(
                self._new_channel, self.spec.host, self.spec.port
            )
        self.opened += 1
        return conn

    def _new_channel(self) -> Channel:
        return Channel(response=True, head_limit=RESPONSE_HEAD_LIMIT)

    def release(self, conn: Channel) -> None:
        """Give back a connection whose response was read completely and may be kept."""
        if len(self._idle) >= self.size or conn.is_closing():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    def clear(self) -> None:
        """Close every idle connection (the node died, or the balancer stops)."""
        while self._idle:
            self._idle.pop().close()

    @property
    def idle(self) -> int:
        return len(self._idle)

    def __repr__(self) -> str:
        return f"<NodePool {self.spec.name} [{self.idle} idle, {self.opened} opened]>"


class Latency:
    """Request latency of one node: exact count and mean, p50/p99 over the last 1024."""

    __slots__ = ("_recent", "count", "total")

    def __init__(self, window: int = 1024) -> None:
        self.count = 0
        self.total = 0.0
        self._recent: deque[float] = deque(maxlen=window)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self._recent.append(seconds)

    def summary(self) -> dict[str, float | None]:
        """Milliseconds, rounded for display; ``None`` before the first request."""
        if not self.count:
            return {"mean_ms": None, "p50_ms": None, "p99_ms": None}
        recent = sorted(self._recent)

        def pick(q: float) -> float:
            return round(recent[min(len(recent) - 1, int(q * len(recent)))] * 1000, 3)

        return {
            "mean_ms": round(self.total / self.count * 1000, 3),
            "p50_ms": pick(0.5),
            "p99_ms": pick(0.99),
        }


class Node:
    """One app node: its spec, health, in-flight count, counters and pool."""

    def __init__(self, spec: NodeSpec, config: BalancerConfig) -> None:
        self.spec = spec
        self.name = spec.name
        self.weight = spec.weight
        self.passive = PassiveHealth(config.health)
        self.active = ActiveHealth(config.health)
        self.pool = NodePool(spec, config.pool_size, config.upstream_keepalive)
        self.in_flight = 0  # least-conn reads this
        self.requests = 0  # requests answered by this node (any status)
        self.failures = 0  # connect errors, timeouts, 502s and broken responses
        self.latency = Latency()

    def available(self, now: float) -> bool:
        return self.active.up and self.passive.available(now)

    @property
    def healthy(self) -> bool:
        """What ``status`` reports: up for the active check and not failed passively now."""
        return self.available(time.monotonic())

    def record_failure(self, now: float) -> None:
        self.failures += 1
        self.passive.failed(now)
        self.pool.clear()  # its other idle connections are most likely dead too

    def __repr__(self) -> str:
        state = "up" if self.healthy else "down"
        return (
            f"<Node {self.name} {self.spec.url} {state} weight={self.weight} "
            f"in_flight={self.in_flight} requests={self.requests} "
            f"failures={self.failures} pool={self.pool.idle} idle>"
        )
