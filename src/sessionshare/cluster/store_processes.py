"""One small class per store kind: which servers ``up`` starts, what every node is told.

``memcached`` and ``redis`` run servers from the binaries on PATH (a missing one fails
before anything starts, saying which package to install); ``replicated`` and ``backup``
run no server (the app nodes are the members) but need a member list and a shared secret;
``memory`` needs nothing and is single-node only. Adding a kind means adding a class here
and a line to ``STORE_KINDS``; the supervisor and the status page do not change.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sessionshare.cluster.probes import exchange, memcached_stats, redis_stats
from sessionshare.cluster.supervisor import ChildSpec
from sessionshare.cluster.topology import HOST, StoreNodeTopology, Topology
from sessionshare.errors import ConfigError

__all__ = ["STORE_KINDS", "MissingBinary", "StoreKind", "store_kind"]


class MissingBinary(ConfigError):
    """A store server is not installed; the message says how to install it."""


@dataclass(frozen=True, slots=True)
class ServerStats:
    """What the dashboard shows for one store server (``None``: unknown or down)."""

    items: int | None = None
    hits: int | None = None
    misses: int | None = None

    def as_dict(self) -> dict[str, Any]:
        total = (self.hits or 0) + (self.misses or 0)
        ratio = round((self.hits or 0) / total, 3) if total else None
        return {"items": self.items, "hits": self.hits, "misses": self.misses, "hit_ratio": ratio}


class StoreKind:
    """The default: no server process, nothing extra for the nodes (``memory``)."""

    kind: ClassVar[str] = "memory"
    #: the server binary and its Debian package, for kinds that run servers.
    binary: ClassVar[str | None] = None
    package: ClassVar[str | None] = None

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    def check_installed(self) -> str | None:
        """The binary's path; ``MissingBinary`` (saying what to install) when absent."""
        if self.binary is None:
            return None
        path = shutil.which(self.binary)
        if path is None:
            raise MissingBinary(
                f"store {self.kind}: {self.binary!r} is not on PATH; install it with "
                f"`apt-get install {self.package}` (Debian/Ubuntu), or run `sessionshare up` "
                "with the default store (replicated), which needs no server. Nothing was started."
            )
        return path

    def servers(self, run_dir: Path) -> list[ChildSpec]:
        """The store server processes to start before the nodes."""
        return []

    def node_env(self) -> Mapping[str, str]:
        """Extra environment for every node (secrets go here, never on a command line)."""
        return {}

    async def server_stats(self, node: StoreNodeTopology) -> ServerStats | None:
        return None


class ServerKind(StoreKind):
    """A kind whose store nodes are server processes (one per ``[[store.nodes]]``)."""

    #: one protocol line that proves the server is up, and the start of its answer.
    probe_line: ClassVar[tuple[bytes, bytes]]

    def argv(self, binary: str, node: StoreNodeTopology, run_dir: Path) -> tuple[str, ...]:
        raise NotImplementedError

    def servers(self, run_dir: Path) -> list[ChildSpec]:
        binary = self.check_installed()
        assert binary is not None
        return [
            ChildSpec(
                name=f"{self.kind}:{node.id}",
                role="store",
                argv=self.argv(binary, node, run_dir),
                address=node.address,
                probe=_line_probe(node.port, *self.probe_line),
                ready_timeout=10.0,
            )
            for node in self.topology.store.nodes
        ]


class MemcachedKind(ServerKind):
    kind = "memcached"
    binary = "memcached"
    package = "memcached"
    probe_line = (b"version\r\n", b"VERSION")

    def argv(self, binary: str, node: StoreNodeTopology, run_dir: Path) -> tuple[str, ...]:
        # memcached refuses to run as root unless told which user to stay.
        user = ("-u", pwd.getpwuid(0).pw_name) if os.geteuid() == 0 else ()
        return (binary, "-l", HOST, "-p", str(node.port), "-U", "0", "-m", "64", *user)

    async def server_stats(self, node: StoreNodeTopology) -> ServerStats | None:
        stats = await memcached_stats(HOST, node.port)
        if stats is None:
            return None
        # The store reads with get-and-touch (one round trip refreshes the TTL), which
        # memcached counts as touch hits, not get hits: both are reads.
        return ServerStats(
            items=_int(stats.get("curr_items")),
            hits=_sum(stats, "get_hits", "touch_hits"),
            misses=_sum(stats, "get_misses", "touch_misses"),
        )


class RedisKind(ServerKind):
    kind = "redis"
    binary = "redis-server"
    package = "redis-server"
    probe_line = (b"PING\r\n", b"+PONG")

    def argv(self, binary: str, node: StoreNodeTopology, run_dir: Path) -> tuple[str, ...]:
        # Persistence off, so a restarted redis really lost its data (as memcached does).
        data_dir = run_dir / f"redis-{node.id}"
        data_dir.mkdir(parents=True, exist_ok=True)
        return (binary, "--port", str(node.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(data_dir))  # fmt: skip

    async def server_stats(self, node: StoreNodeTopology) -> ServerStats | None:
        info = await redis_stats(HOST, node.port)
        if info is None:
            return None
        keys = sum(
            _int(part.removeprefix("keys=")) or 0
            for key, value in info.items()
            if key.startswith("db")
            for part in value.split(",")
            if part.startswith("keys=")
        )
        return ServerStats(
            items=keys,
            hits=_int(info.get("keyspace_hits")),
            misses=_int(info.get("keyspace_misses")),
        )


class PeerKind(StoreKind):
    """``replicated`` / ``backup``: members are the nodes; they share a signing secret."""

    kind = "replicated"

    def __init__(self, topology: Topology) -> None:
        super().__init__(topology)
        # One secret per run unless the user gave one: frames are HMAC-signed with it.
        given = topology.session.get("secret") or os.environ.get("SESSIONSHARE_SECRET")
        self.secret = str(given) if given else secrets.token_hex(32)

    def node_env(self) -> Mapping[str, str]:
        return {"SESSIONSHARE_SECRET": self.secret}


class BackupKind(PeerKind):
    kind = "backup"


STORE_KINDS: dict[str, type[StoreKind]] = {
    "memory": StoreKind,
    "memcached": MemcachedKind,
    "redis": RedisKind,
    "replicated": PeerKind,
    "backup": BackupKind,
}


def store_kind(topology: Topology) -> StoreKind:
    return STORE_KINDS[topology.store.kind](topology)


def _line_probe(port: int, request: bytes, expect: bytes) -> Any:
    """A probe that sends one protocol line and checks the reply's start."""

    async def probe() -> bool:
        reply = await exchange(HOST, port, request, lambda d: d.endswith(b"\r\n"), 0.5)
        return reply is not None and reply.startswith(expect)

    return probe


def _sum(stats: Mapping[str, str], *names: str) -> int | None:
    values = [_int(stats.get(name)) for name in names]
    return None if all(v is None for v in values) else sum(v or 0 for v in values)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
