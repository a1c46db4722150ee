"""``sessionshare up`` put together: preflight, start in order, serve, stop in reverse.

Preflight runs before any process starts, so a missing binary, a store that is not built
yet, a bad option or a busy port costs one line of error and leaves nothing to clean up.
Then: store servers, app nodes (all at once, each waited for until ``/healthz`` answers),
the balancer (in this process for ``builtin``; nginx as a child for ``--lb nginx``).

With nginx, ``/_cluster/`` is served by a private embedded balancer that only answers
``/_cluster/*`` (its health checks also see the nodes); the generated nginx config gets one
extra ``location /_cluster/`` proxying to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from sessionshare.balancer import Balancer, BalancerConfig, NodeSpec
from sessionshare.balancer.config import PolicyName
from sessionshare.balancer.nginx import NginxProcess, find_nginx
from sessionshare.cluster.dashboard import PREFIX, Dashboard
from sessionshare.cluster.events import Event, EventLog
from sessionshare.cluster.probes import http_ok
from sessionshare.cluster.status import ClusterStatus
from sessionshare.cluster.store_processes import StoreKind, store_kind
from sessionshare.cluster.supervisor import ChildSpec, Supervisor
from sessionshare.cluster.topology import (
    HOST,
    NodeTopology,
    Topology,
    node_options,
    session_config,
)
from sessionshare.errors import ConfigError
from sessionshare.stores.factory import create_store

__all__ = ["ClusterRunner", "PortInUse", "check_ports"]



class PortInUse(ConfigError):
    """A port of the topology is taken; the message names it and the key that set it."""


def check_ports(topology: Topology) -> None:
    """Bind every port once (as the servers will) so a busy one fails before any start."""
    for port, key in topology.ports():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # The servers set SO_REUSEADDR too, so TIME_WAIT leftovers are not "in use".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError:
                raise PortInUse(
                    f"port {port} ({key}) is already in use on {HOST}: stop what listens "
                    f"there (e.g. `ss -ltnp 'sport = :{port}'`) or choose another port"
                ) from None


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ClusterRunner:
    """One cluster's life: ``preflight()``, then ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        topology: Topology,
        *,
        on_ready: Callable[[ClusterRunner], None] = lambda runner: None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.topology = topology
        self.on_ready = on_ready
        self.events = EventLog()
        if on_event is not None:
            self.events.listen(on_event)
        self.store: StoreKind = store_kind(topology)
        self.run_dir = topology.run_dir
        self.supervisor: Supervisor | None = None
        self.balancer: Balancer | None = None
        self.status: ClusterStatus | None = None
        self._nginx_pid: Callable[[], int | None] = lambda: None
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<ClusterRunner {self.topology.balancer.url} {self.supervisor!r}>"

    @property
    def url(self) -> str:
        return self.topology.balancer.url

    # -- before anything starts ----------------------------------------------------------

    def preflight(self) -> None:
        """Everything that can fail without starting a process; raises ``ConfigError``."""
        self.store.check_installed()
        if self.topology.balancer.kind == "nginx":
            find_nginx()  # its NginxError says how to install nginx
        config = session_config(self.topology, self.topology.nodes[0])
        # Building the store checks what only it knows (and raises NotYetAvailable for a
        # kind that is not built yet); it connects lazily, so nothing is started here.
        create_store(config).close()
        check_ports(self.topology)

    # -- the run ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, call ``on_ready``, wait for ``stop``; always stop everything."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.supervisor = Supervisor(self.run_dir, self.events)
        startup = asyncio.create_task(self._start(self.supervisor))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if startup.done():
                startup.result()  # raises StartError when a child did not come up
                self._write_state()
                self.on_ready(self)
                await stopper
        finally:
            for task in (startup, stopper):
                task.cancel()
            await asyncio.gather(startup, stopper, return_exceptions=True)
            await self._shutdown()

    async def _start(self, supervisor: Supervisor) -> None:
        for spec in self.store.servers(self.run_dir):
            await supervisor.start(spec)
        await asyncio.gather(*(supervisor.start(self._node_spec(n)) for n in self.topology.nodes))
        await self._start_balancer(supervisor)

    def _node_spec(self, node: NodeTopology) -> ChildSpec:
        options = node_options(self.topology, node)
        argv = [sys.executable, "-m", "sessionshare", "node", "--name", node.name, "--host",
                HOST, "--port", str(node.port), "--workers", str(node.workers)]  # fmt: skip
        if self.topology.app is not None:  # the app's kind (WSGI, ASGI) picks the server
            argv += ["--app", self.topology.app]
        else:
            argv += ["--server", node.server]
        if node.route != node.name:
            argv += ["--option", f"route={node.route}"]
        env = dict(os.environ)
        env.update({f"SESSIONSHARE_{k.upper()}": _env_value(v) for k, v in options.items()})
        env.update(self.store.node_env())
        env.pop("SESSIONSHARE_ROUTE", None)  # the node's --name (or --option) sets it
        return ChildSpec(
            name=node.name,
            role="node",
            argv=tuple(argv),
            address=f"{HOST}:{node.port}",
            probe=lambda port=node.port: http_ok(HOST, port),
            env=env,
        )

    def _balancer_config(self) -> BalancerConfig:
        cookie = session_config(self.topology, self.topology.nodes[0]).cookie_name
        nodes = tuple(
            NodeSpec(name=n.name, host=HOST, port=n.port, weight=n.weight, route=n.route)
            for n in self.topology.nodes
        )
        lb = self.topology.balancer
        return BalancerConfig(
            nodes=nodes,
            policy=cast(PolicyName, lb.policy),
            host=HOST,
            port=lb.port,
            cookie_name=cookie,
        )

    async def _start_balancer(self, supervisor: Supervisor) -> None:
        config = self._balancer_config()
        nginx = self.topology.balancer.kind == "nginx"
        if nginx:
            config = replace(config, port=_free_port())  # the private /_cluster/ server
        self.status = ClusterStatus(
            self.topology,
            supervisor,
            self.events,
            self.store,
            balancer_url=self.url,
            balancer_kind=self.topology.balancer.kind,
            balancer_pid=(lambda: self._nginx_pid()) if nginx else os.getpid,
        )
        self.balancer = Balancer(config, status_hook=self.status.complete)
        dashboard = Dashboard(self.status, self.balancer.status)
        self.balancer.mount(PREFIX, dashboard.handle)
        self.balancer.mount(PREFIX.rstrip("/"), dashboard.redirect)
        await self.status.poll()
        self._tasks.append(asyncio.create_task(self.status.run(), name="cluster status"))
        await self.balancer.start()
        if nginx:
            public = replace(config, port=self.topology.balancer.port)
            child = await supervisor.start(self._nginx_spec(public, config.port))
            self._nginx_pid = lambda: child.pid
        else:
            self.events.add("started", "balancer", f"balancer on {self.url} (pid {os.getpid()})")

    def _nginx_spec(self, config: BalancerConfig, status_port: int) -> ChildSpec:
        prefix = (self.run_dir / "nginx").resolve()
        dashboard = (
            f"location {PREFIX} {{\n"
            f"    proxy_pass http://{HOST}:{status_port};\n"
            "    proxy_http_version 1.1;\n"
            "    proxy_set_header Host $http_host;\n"
            "}\n"
            f"location = {PREFIX.rstrip('/')} {{\n"
            f"    return 301 {PREFIX};\n"
            "}"
        )
        process = NginxProcess(config, prefix, extra_locations=[dashboard])
        process.write()
        process.check()
        argv = process.command()
        port = config.port
        return ChildSpec(
            name="nginx",
            role="balancer",
            argv=(*argv, "-g", "daemon off;"),
            address=f"{HOST}:{port}",
            probe=lambda: http_ok(HOST, port, f"{PREFIX}status"),
        )

    def _write_state(self) -> None:
        """``run/cluster.json``: where ``sessionshare status`` finds this cluster."""
        state = {"url": self.url, "pid": os.getpid(), "dashboard": f"{self.url}{PREFIX}"}
        (self.run_dir / "cluster.json").write_text(json.dumps(state, indent=2) + "\n")

    async def _shutdown(self) -> None:
        """Balancer first (no new requests), then nodes, then stores; nothing left behind."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        nginx = self.topology.balancer.kind == "nginx"
        if self.balancer is not None and not nginx:
            await self.balancer.stop()
        if self.supervisor is not None:
            await self.supervisor.stop()
        if self.balancer is not None and nginx:
            await self.balancer.stop()
        with contextlib.suppress(OSError):
            (self.run_dir / "cluster.json").unlink()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def install_signal_handlers(stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM both mean "stop everything in order" (children never see them)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


def topology_path(config: Path | None) -> Path | None:
    """``--config`` or, when absent, ``./cluster.toml`` if there is one."""
    if config is not None:
        return config
    default = Path("cluster.toml")
    return default if default.is_file() else None
