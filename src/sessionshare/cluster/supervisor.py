"""Child processes of ``sessionshare up``: started in order, watched, restarted, stopped.

Rules that keep a cluster from leaving anything behind:

* every child runs in its own session, so its process group holds its own children
  (uvicorn and gunicorn workers, nginx workers) and one ``killpg`` reaches them all; it
  also keeps a terminal's Ctrl-C away from the children: only ``up`` receives it and
  stops them in reverse order (balancer, nodes, stores);
* the group is signalled only while its leader is unreaped (exit status is read with
  ``waitid(WNOWAIT)``), so its id cannot have been recycled by an unrelated process;
* stragglers are killed before the leader is reaped: a worker whose master died must not
  keep the port, or the restarted node could not bind it.

A child that exits on its own is restarted after a bounded exponential back-off (the
``ExponentialBackoff`` the session core uses for locks, with longer steps), like systemd's
``Restart=on-failure`` with ``RestartSec`` growing; the attempt counter resets once a child
ran healthy for ``stable_after`` seconds, so an old crash does not slow a new restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sessionshare.cluster.events import EventLog
from sessionshare.core.backoff import ExponentialBackoff
from sessionshare.errors import SessionShareError

__all__ = ["Child", "ChildSpec", "ChildState", "StartError", "Supervisor"]

Probe = Callable[[], Awaitable[bool]]
#: 1-2 s before the first restart (long enough for the dashboard, polling twice a second,
#: to show the node down), doubling up to 15-30 s for a crash loop.
RESTART_BACKOFF = ExponentialBackoff(base=2.0, cap=30.0)


class StartError(SessionShareError):
    """A child died or never became healthy at start-up; the message has its log tail."""


class ChildState(enum.StrEnum):
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    RESTARTING = "restarting"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """How to run one child and how to know it works."""

    name: str
    #: ``store``, ``node`` or ``balancer``: the start order, and the status section.
    role: str
    argv: tuple[str, ...]
    address: str
    probe: Probe
    env: Mapping[str, str] | None = None
    stop_signal: int = signal.SIGTERM
    #: longest wait for the first healthy probe (a replicated node waits for its peers).
    ready_timeout: float = 30.0


class Child:
    """One supervised process and its history (pid, state, restarts, log)."""

    def __init__(self, spec: ChildSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.state = ChildState.STARTING
        self.restarts = 0
        self.failures = 0  # consecutive crashes, for the back-off
        self.healthy_since: float | None = None
        self.last_exit: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        running = self._proc is not None and self.exit_status() is None
        return self._proc.pid if running and self._proc is not None else None

    @property
    def healthy(self) -> bool:
        return self.state is ChildState.HEALTHY

    def __repr__(self) -> str:
        return (
            f"<Child {self.name} pid={self.pid} {self.spec.address} {self.state.value} "
            f"restarts={self.restarts}>"
        )

    def spawn(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in reap()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._log.write(f"--- {stamp} start: {' '.join(self.spec.argv)}\n".encode())
        self._log.flush()
        env = None if self.spec.env is None else dict(self.spec.env)
        self._proc = subprocess.Popen(
            self.spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.last_exit = None

    def exit_status(self) -> int | None:
        """The exit code (negative: signal) once exited, without reaping the leader."""
        if self._proc is None:  # reaped, or never spawned (Popen raised)
            return self.last_exit if self.last_exit is not None else 0
        try:
            info = os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self._proc.returncode if self._proc.returncode is not None else -1
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def signal_group(self, signum: int) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signum)

    def reap(self) -> None:
        """Kill group stragglers (leader still unreaped, so the pgid is ours), then reap."""
        if self._proc is not None:
            status = self.exit_status()
            if status is not None:
                self.signal_group(signal.SIGKILL)
                self._proc.wait(timeout=5)
                self.last_exit = status
                self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return "(no log)"


class Supervisor:
    """Starts children in order, keeps them running, stops them newest first."""

    def __init__(
        self,
        run_dir: Path,
        events: EventLog,
        *,
        backoff: ExponentialBackoff = RESTART_BACKOFF,
        poll_interval: float = 0.1,
        probe_interval: float = 1.0,
        stop_timeout: float = 10.0,
        stable_after: float = 10.0,
    ) -> None:
        self.log_dir = run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.events = events
        self.backoff = backoff
        self.poll_interval = poll_interval
        self.probe_interval = probe_interval
        self.stop_timeout = stop_timeout
        self.stable_after = stable_after
        self.children: list[Child] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    def __repr__(self) -> str:
        states = ", ".join(f"{c.name}={c.state.value}" for c in self.children)
        return f"<Supervisor [{states}]>"

    def by_role(self, role: str) -> list[Child]:
        return [c for c in self.children if c.spec.role == role]

    def get(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)

    async def start(self, spec: ChildSpec) -> Child:
        """Start ``spec`` and wait until healthy; raise ``StartError`` with its log if not."""
        child = Child(spec, self.log_dir / f"{spec.name.replace(':', '-')}.log")
        self.children.append(child)
        child.spawn()
        await self._wait_ready(child, first=True)
        self.events.add("started", child.name, f"{child.name} started (pid {child.pid})")
        self._watchers.append(asyncio.create_task(self._watch(child), name=f"watch {spec.name}"))
        return child

    async def _wait_ready(self, child: Child, *, first: bool) -> bool:
        deadline = time.monotonic() + child.spec.ready_timeout
        while time.monotonic() < deadline:
            status = child.exit_status()
            if status is not None:
                if first:
                    raise StartError(
                        f"{child.name} exited with {status} at start-up; its log "
                        f"({child.log_path}) ends with:\n{child.log_tail()}"
                    )
                return False
            # The child must still be alive after the probe: on a port race another
            # process may answer while ours dies of EADDRINUSE.
            if await child.spec.probe() and child.exit_status() is None:
                child.state = ChildState.HEALTHY
                child.healthy_since = time.monotonic()
                return True
            await asyncio.sleep(0.1)
        if first:
            raise StartError(
                f"{child.name} did not become healthy within {child.spec.ready_timeout:.0f}s "
                f"on {child.spec.address}; its log ({child.log_path}) ends with:\n"
                f"{child.log_tail()}"
            )
        return False

    async def _watch(self, child: Child) -> None:
        """Notice exits at once (every ``poll_interval``), probe health less often."""
        next_probe = time.monotonic() + self.probe_interval
        while not self._stopping:
            await asyncio.sleep(self.poll_interval)
            if self._stopping:
                return
            status = child.exit_status()
            if status is not None:
                await self._restart(child, status)
                next_probe = time.monotonic() + self.probe_interval
                continue
            if time.monotonic() >= next_probe:
                next_probe = time.monotonic() + self.probe_interval
                await self._probe(child)

    async def _probe(self, child: Child) -> None:
        healthy = await child.spec.probe()
        if healthy and child.state is not ChildState.HEALTHY:
            child.state = ChildState.HEALTHY
            child.healthy_since = time.monotonic()
            self.events.add("up", child.name, f"{child.name} is healthy again")
        elif not healthy and child.state is ChildState.HEALTHY:
            child.state = ChildState.UNHEALTHY
            child.healthy_since = None
            self.events.add("unhealthy", child.name, f"{child.name} fails its health check")

    async def _restart(self, child: Child, status: int) -> None:
        """Restart a child that exited on its own, waiting longer after each quick crash."""
        ran = time.monotonic() - child.healthy_since if child.healthy_since else 0.0
        if ran >= self.stable_after:
            child.failures = 0
        child.reap()
        child.state = ChildState.RESTARTING
        child.healthy_since = None
        delay = self.backoff.compute(child.failures)
        child.failures += 1
        how = f"killed by signal {-status}" if status < 0 else f"exit code {status}"
        self.events.add("down", child.name, f"{child.name} is down ({how})")
        message = f"restarting {child.name} in {delay:.1f}s (try {child.failures})"
        self.events.add("restarting", child.name, message)
        await asyncio.sleep(delay)
        if self._stopping:
            return
        child.restarts += 1
        child.spawn()
        if await self._wait_ready(child, first=False):
            self.events.add("up", child.name, f"{child.name} is back (pid {child.pid})")

    async def stop(self) -> None:
        """Stop every child in reverse start order (balancer, nodes, stores); bounded."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        # Newest role first; the children of one role (all nodes, all stores) stop together.
        for _, group in itertools.groupby(reversed(self.children), key=lambda c: c.spec.role):
            await asyncio.gather(*(self.stop_child(child) for child in group))

    async def stop_child(self, child: Child) -> None:
        if child.exit_status() is None:
            child.signal_group(child.spec.stop_signal)
            if not await self._wait_exit(child, self.stop_timeout):
                child.signal_group(signal.SIGKILL)
                await self._wait_exit(child, self.stop_timeout)
        child.reap()
        if child.state is not ChildState.STOPPED:
            child.state = ChildState.STOPPED
            self.events.add("stopped", child.name, f"{child.name} stopped")

    @staticmethod
    async def _wait_exit(child: Child, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while child.exit_status() is None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True
