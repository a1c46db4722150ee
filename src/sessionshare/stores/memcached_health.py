"""Which memcached nodes are usable, as this process sees them, and what to do on recovery.

States (SPEC §3 ``operation_timeout``)::

    UP ──timeout──► SUSPECT ──probe fails──► DOWN ──probe answers──► UP (+ on_return)
     ▲                 │                       ▲
     └──probe answers──┘   refused connection ─┘ (definite: nothing listens)

A SUSPECT node is still used: one slow answer is not a failure (MSM marks a node dead on
the first timeout and relocates sessions needlessly). Only a probe, run at once in the
background, may declare it DOWN. A DOWN node is skipped until a probe finds it again.

A node that comes back (or restarted between two probes: its pid or start time changed,
so it lost everything) triggers ``on_return``, which re-replicates sessions that have
only one copy left (memcached-session-manager never does this: its issue #300). Until
``on_return`` says it finished (a node it had to list did not answer, say), the next
probe rounds call it again: a pass that gave up half-way must not leave sessions with
one copy for good.

The prober is one daemon thread per process, started lazily (after a fork, too), doing
one bounded probe per node per ``interval``. Probes use their own short connections.
"""

from __future__ import annotations

import enum
import logging
import socket
import threading
import time
from collections.abc import Callable

from sessionshare.process import current_pid
from sessionshare.stores.node_list import NodeSpec

__all__ = ["NodeHealth", "NodeState", "probe_identity"]

#: calls of ``on_return`` for one return of a node at most (one per probe round).
RETURN_ATTEMPTS = 10

log = logging.getLogger("sessionshare.memcached")


class NodeState(enum.Enum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


def probe_identity(spec: NodeSpec, timeout: float) -> str | None:
    """``"<pid>@<start time>"`` of the memcached behind ``spec``, or ``None`` if it does
    not answer within ``timeout``. A changed identity means a restart (data lost)."""
    try:
        with socket.create_connection((spec.host, spec.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"stats\r\n")
            data = b""
            deadline = time.monotonic() + timeout
            while not data.endswith(b"END\r\n"):
                if time.monotonic() > deadline or len(data) > 65536:
                    return None
                chunk = sock.recv(8192)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    stats = dict(line.split(b" ")[1:3] for line in data.split(b"\r\n") if line.startswith(b"STAT "))
    try:
        started = int(stats[b"time"]) - int(stats[b"uptime"])
        return f"{int(stats[b'pid'])}@{started}"
    except (KeyError, ValueError):
        return None


class NodeHealth:
    """Per-node state, updated by request failures and by the background prober."""

    def __init__(
        self,
        specs: list[NodeSpec],
        *,
        probe_timeout: float,
        interval: float = 1.0,
        probe: Callable[[NodeSpec, float], str | None] = probe_identity,
        on_return: Callable[[str], bool] | None = None,
    ) -> None:
        self.specs = {spec.id: spec for spec in specs}
        self.state = {spec.id: NodeState.UP for spec in specs}
        self.identity: dict[str, str | None] = {spec.id: None for spec in specs}
        self.probe_timeout = probe_timeout
        self.interval = interval
        self._probe = probe
        #: called when a node is back; ``False`` (or an exception): call again next round.
        self.on_return = on_return
        #: nodes back whose ``on_return`` has not finished yet -> the calls it had.
        self.returning: dict[str, int] = {}
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._pid: int | None = None
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        states = ", ".join(f"{node} {state.value}" for node, state in self.state.items())
        return f"<NodeHealth [{states}]>"

    def available(self, node: str) -> bool:
        return self.state[node] is not NodeState.DOWN

    def report_failure(self, node: str, *, definite: bool) -> None:
        """A request could not talk to ``node``; probe it now (in the background)."""
        previous = self.state[node]
        if definite:
            self._set(node, NodeState.DOWN)
        elif previous is NodeState.UP:
            self._set(node, NodeState.SUSPECT)
        self.ensure_running()
        self._wake.set()

    def _set(self, node: str, state: NodeState) -> None:
        previous = self.state[node]
        if previous is not state:
            self.state[node] = state
            level = logging.INFO if state is NodeState.UP else logging.WARNING
            log.log(level, "memcached node %s: %s -> %s", node, previous.value, state.value)

    def ensure_running(self) -> None:
        """Start the prober thread in this process if it is not running (lazy, fork-safe)."""
        if self._pid == current_pid() or self._stopped.is_set():
            return
        with self._guard:
            if self._pid != current_pid():
                self._pid = current_pid()
                threading.Thread(
                    target=self._run, name="sessionshare-memcached-health", daemon=True
                ).start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def probe_all(self) -> None:
        """One probe round: update every node's state; call ``on_return`` for returns."""
        for node, spec in self.specs.items():
            identity = self._probe(spec, self.probe_timeout)
            if identity is None:
                self._set(node, NodeState.DOWN)
                continue
            previous, known = self.state[node], self.identity[node]
            self.identity[node] = identity
            self._set(node, NodeState.UP)
            restarted = known is not None and known != identity
            if restarted:
                log.warning("memcached node %s restarted (its data is gone)", node)
            if self.on_return is None:
                continue
            if previous is NodeState.DOWN or restarted:
                self.returning[node] = 0
            if node in self.returning:
                self._returned(node)

    def _returned(self, node: str) -> None:
        """Call ``on_return`` for ``node``; keep it for the next round unless it finished,
        up to ``RETURN_ATTEMPTS`` calls (a node that can never be listed must not make
        every round repeat the work and the log line forever)."""
        assert self.on_return is not None
        self.returning[node] += 1
        try:
            finished = self.on_return(node)
        except Exception:  # keep probing; the next round retries
            log.exception("re-replication after node %s came back failed", node)
            finished = False
        if finished:
            del self.returning[node]
        elif self.returning[node] >= RETURN_ATTEMPTS:
            del self.returning[node]
            log.error(
                "re-replication after node %s came back did not finish in %d attempts; "
                "sessions left with one copy get their second when next written",
                node,
                RETURN_ATTEMPTS,
            )

    def _run(self) -> None:
        while not self._stopped.is_set():
            self.probe_all()
            self._wake.wait(self.interval)
            self._wake.clear()
