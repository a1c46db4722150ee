"""Node health: passive as nginx, active as HAProxy (SPEC §5).

Both are kept because they answer different questions. Passive checks react within one
request to a node that refuses connections (``kill -9``), but only for traffic that
happens to hit it; active probes notice a node that accepts connections yet answers
``/healthz`` badly, and bring a node back without sacrificing a user request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sessionshare.balancer.config import HealthConfig

if TYPE_CHECKING:
    from sessionshare.balancer.upstream import Node

__all__ = ["ActiveHealth", "HealthChecker", "PassiveHealth", "probe"]

log = logging.getLogger(__name__)


class PassiveHealth:
    """nginx's ``max_fails`` / ``fail_timeout`` bookkeeping (ngx_http_upstream_round_robin.c).

    nginx keeps two stamps: ``accessed`` (last failure) and ``checked`` (last failure or
    the last time a request was let through to probe a failed peer). A failed peer is
    skipped while ``now - checked <= fail_timeout``; after that exactly one request per
    window goes through, and a success clears the failures.
    """

    __slots__ = ("_accessed", "_checked", "fail_timeout", "fails", "max_fails")

    def __init__(self, config: HealthConfig) -> None:
        self.max_fails = config.max_fails
        self.fail_timeout = config.fail_timeout
        self.fails = 0
        self._accessed = 0.0
        self._checked = 0.0

    def available(self, now: float) -> bool:
        if self.max_fails == 0 or self.fails < self.max_fails:
            return True
        return now - self._checked > self.fail_timeout

    def selected(self, now: float) -> None:
        """A request goes to this node; after a quiet window it counts as a fresh check."""
        if now - self._checked > self.fail_timeout:
            self._checked = now

    def failed(self, now: float) -> None:
        self.fails += 1
        self._accessed = self._checked = now

    def succeeded(self) -> None:
        # nginx clears failures only on a success that came after the last failure's
        # window was re-opened by ``selected``, not on a request that was in flight.
        if self._accessed < self._checked:
            self.fails = 0

    def __repr__(self) -> str:
        return f"<PassiveHealth fails={self.fails}/{self.max_fails}>"


class ActiveHealth:
    """HAProxy's ``rise`` / ``fall`` counters: flapping probes do not flap the node."""

    __slots__ = ("_streak", "fall", "rise", "up")

    def __init__(self, config: HealthConfig) -> None:
        self.rise = config.rise
        self.fall = config.fall
        # HAProxy starts servers "up": a fresh balancer must serve before the first probe.
        self.up = True
        self._streak = 0  # >0: consecutive successes while down; <0: failures while up

    def record(self, ok: bool) -> bool:
        """Count one probe; return True when this probe changed ``up``."""
        if ok == self.up:
            self._streak = 0
            return False
        self._streak += 1
        if self._streak >= (self.rise if ok else self.fall):
            self.up = ok
            self._streak = 0
            return True
        return False

    def __repr__(self) -> str:
        return f"<ActiveHealth {'up' if self.up else 'down'} streak={self._streak}>"


async def probe(host: str, port: int, path: str, timeout: float) -> bool:
    """One ``GET /healthz`` on a fresh connection: a 2xx status line in time is healthy.

    Hand-written on purpose: a probe must not borrow a pooled connection (a stale pooled
    connection would fail the probe, and a probe would skew the pool's counters), and a
    status line is all it needs, so no HTTP client library earns its import here.
    """
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "User-Agent: sessionshare-health\r\nConnection: close\r\n\r\n".encode()
            )
            status_line = await reader.readline()
        parts = status_line.split(None, 2)
        return len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1][:1] == b"2"
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()


class HealthChecker:
    """Probes every node each ``interval`` seconds, all nodes concurrently."""

    def __init__(
        self,
        nodes: Iterable[Node],
        config: HealthConfig,
        on_change: Callable[[Node], None] | None = None,
    ) -> None:
        self.nodes = tuple(nodes)
        self.config = config
        self.on_change = on_change
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.config.interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check_once(self) -> None:
        results = await asyncio.gather(
            *(
                probe(n.spec.host, n.spec.port, self.config.path, self.config.timeout)
                for n in self.nodes
            )
        )
        for node, ok in zip(self.nodes, results, strict=True):
            if node.active.record(ok):
                log.warning("node %s is %s (active check)", node.name, "up" if ok else "down")
                if self.on_change is not None:
                    self.on_change(node)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval)
            await self.check_once()

    def __repr__(self) -> str:
        state = "running" if self._task is not None else "stopped"
        return f"<HealthChecker {state} every {self.config.interval}s, {len(self.nodes)} nodes>"
