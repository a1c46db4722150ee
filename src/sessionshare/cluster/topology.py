"""The cluster file (``cluster.toml``) and ``sessionshare up``'s options, as checked dataclasses.

Everything is validated here, before a single process starts: a typo in the file must cost
the user one line of error output naming the key and the reason, never a half-started
cluster to clean up (supervisors such as systemd and docker compose behave the same way).

Precedence, lowest first: built-in defaults < the file < command-line options, the order of
``config.py`` (the environment still applies to session options at run time, in the nodes).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from sessionshare.balancer.config import POLICIES
from sessionshare.config import STORE_KINDS, SessionConfig
from sessionshare.core.ids import is_valid_name
from sessionshare.errors import ConfigError

__all__ = [
    "LB_KINDS",
    "PEER_STORES",
    "SERVERS",
    "BalancerTopology",
    "NodeTopology",
    "Overrides",
    "StoreNodeTopology",
    "StoreTopology",
    "Topology",
    "TopologyError",
    "load_topology",
    "render_toml",
]

LB_KINDS = ("builtin", "nginx")
SERVERS = ("uvicorn", "gunicorn")
#: stores whose members are the app nodes themselves (no server process of their own).
PEER_STORES = ("replicated", "backup")
#: every cluster runs on the loopback: it is a demo and test tool (SPEC §7).
HOST = "127.0.0.1"

DEFAULT_NODE_PORT = 9001
DEFAULT_REPLICATION_PORT = 4001
DEFAULT_BALANCER_PORT = 8080
DEFAULT_STORE = "replicated"
DEFAULT_NODE_COUNT = 2
#: kind → (id prefix, first port, how many): MSM's usual two memcached nodes, one redis.
STORE_SERVER_DEFAULTS: dict[str, tuple[str, int, int]] = {
    "memcached": ("n", 11211, 2),
    "redis": ("r", 6379, 1),
}
#: session options ``up`` derives from the topology; the message says where they belong.
_DERIVED_OPTIONS = {
    "store": "set it in [store] kind (or --store)",
    "nodes": "list the store nodes as [[store.nodes]] tables",
    "route": "set it per node in [[nodes]] route",
    "members": "set replication_port per node in [[nodes]]; the member list is derived",
    "member_name": "it is the node's name",
}
_SESSION_OPTIONS = tuple(
    f.name for f in dataclasses.fields(SessionConfig) if f.name not in _DERIVED_OPTIONS
)


class TopologyError(ConfigError):
    """The cluster file or an ``up`` option is wrong; the message names the key and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeTopology:
    """One demo app node: its name (and route), port, share of traffic and processes."""

    name: str
    port: int
    route: str
    weight: int = 1
    workers: int = 1
    server: str = "uvicorn"
    #: replicated/backup stores: the TCP port this node's member listens on.
    replication_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreNodeTopology:
    """One store server that ``up`` starts (a memcached or redis process)."""

    id: str
    port: int

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreTopology:
    kind: str
    nodes: tuple[StoreNodeTopology, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancerTopology:
    kind: str = "builtin"
    policy: str = "round-robin"
    port: int = DEFAULT_BALANCER_PORT

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    """The whole cluster: what ``up`` starts, and the session options every node gets."""

    nodes: tuple[NodeTopology, ...]
    store: StoreTopology
    balancer: BalancerTopology
    #: ``[session]`` as written (validated), without the options derived from the topology.
    session: Mapping[str, Any] = field(default_factory=dict)
    run_dir: Path = Path("run")
    source: str = "defaults"
    #: ``module:app`` of the user's WSGI or ASGI app; ``None`` runs the demo app.
    app: str | None = None

    def ports(self) -> list[tuple[int, str]]:
        """Every port the cluster listens on, with the key that set it (for errors)."""
        found = [(self.balancer.port, "balancer.port")]
        for i, node in enumerate(self.nodes):
            found.append((node.port, f"nodes[{i}].port"))
            if self.store.kind in PEER_STORES and node.replication_port is not None:
                found.append((node.replication_port, f"nodes[{i}].replication_port"))
        found += [(s.port, f"store.nodes[{i}].port") for i, s in enumerate(self.store.nodes)]
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Overrides:
    """``sessionshare up``'s options; ``None`` means "as in the file (or the default)"."""

    nodes: int | None = None
    store: str | None = None
    sticky: bool | None = None
    locking: str | None = None
    lb: str | None = None
    policy: str | None = None
    port: int | None = None
    run_dir: Path | None = None
    app: str | None = None


class _Table:
    """One TOML table read key by key, so every error can name ``where.key``."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        self.source = source
        self.where = where
        if not isinstance(data, dict):
            self.fail("", f"expected a table, got {_describe(data)}")
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def fail(self, key: str, reason: str) -> NoReturn:
        name = ".".join(part for part in (self.where, key) if part) or "(top level)"
        raise TopologyError(f"{self.source}: {name}: {reason}")

    def get(self, key: str, kind: type, default: Any) -> Any:
        self.seen.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        # bool is an int in Python, not in TOML: ``port = true`` is an error.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(key, f"expected {_TYPE_NAMES[kind]}, got {_describe(value)}")
        return value

    def port(self, key: str, default: int | None) -> Any:
        value = self.get(key, int, default)
        if value is not None and not 0 < value < 65536:
            self.fail(key, f"{value} is not a TCP port (1-65535)")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value: str = self.get(key, str, default)
        if value not in choices:
            self.fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def positive(self, key: str, default: int) -> int:
        value: int = self.get(key, int, default)
        if value < 1:
            self.fail(key, f"must be at least 1, got {value}")
        return value

    def table(self, key: str) -> _Table:
        self.seen.add(key)
        return _Table(self.data.get(key, {}), _join(self.where, key), self.source)

    def tables(self, key: str) -> list[_Table] | None:
        self.seen.add(key)
        if key not in self.data:
            return None
        items = self.data[key]
        if not isinstance(items, list):
            self.fail(key, f"expected an array of tables ([[{key}]]), got {_describe(items)}")
        return [_Table(item, f"{_join(self.where, key)}[{i}]", self.source) for i, item in
                enumerate(items)]  # fmt: skip

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen))
            self.fail(unknown[0], f"unknown key (known keys here: {known})")


_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false", dict: "a table"}


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)  # fmt: skip
    return f"{kind} {value!r}" if kind != "table" else "a table"


# -- loading ---------------------------------------------------------------------------------


def load_topology(path: Path | None = None, overrides: Overrides | None = None) -> Topology:
    """Read ``path`` (or use the defaults), apply ``overrides``, validate everything.

    Raises:
        TopologyError: naming the key (``nodes[1].port``) and the reason.
    """
    overrides = overrides or Overrides()
    source = str(path) if path is not None else "defaults"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise TopologyError(f"{path}: cannot read the cluster file ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise TopologyError(f"{path}: not valid TOML: {exc}") from None
    root = _Table(data, "", source)
    cluster = root.table("cluster")
    run_dir = Path(cluster.get("run_dir", str, "run"))
    app = cluster.get("app", str, None)
    app = overrides.app or app
    cluster.done()
    balancer = _read_balancer(root.table("balancer"), overrides)
    store_table = root.table("store")
    kind = store_table.choice("kind", STORE_KINDS, DEFAULT_STORE)
    store_nodes = _read_store_nodes(store_table, kind, overrides)
    store_table.done()
    if overrides.store is not None:
        kind = overrides.store
    store = StoreTopology(kind=kind, nodes=store_nodes)
    nodes = _read_nodes(root, overrides.nodes)
    session_table = root.table("session")
    session = dict(session_table.data)
    session_table.seen.update(session)
    if overrides.sticky is not None:
        session["sticky"] = overrides.sticky
    if overrides.locking is not None:
        session["locking"] = overrides.locking
    root.done()
    topology = Topology(
        nodes=nodes,
        store=store,
        balancer=balancer,
        session=session,
        run_dir=overrides.run_dir or run_dir,
        source=source,
        app=app,
    )
    _validate(topology)
    return topology


def _read_balancer(table: _Table, overrides: Overrides) -> BalancerTopology:
    result = BalancerTopology(
        kind=table.choice("kind", LB_KINDS, "builtin"),
        policy=table.choice("policy", POLICIES, "round-robin"),
        port=table.port("port", DEFAULT_BALANCER_PORT),
    )
    table.done()
    changes = {"kind": overrides.lb, "policy": overrides.policy, "port": overrides.port}
    return dataclasses.replace(result, **{k: v for k, v in changes.items() if v is not None})


def _read_store_nodes(
    table: _Table, file_kind: str, overrides: Overrides
) -> tuple[StoreNodeTopology, ...]:
    """The file's store servers; a ``--store`` of another kind brings that kind's defaults."""
    listed = table.tables("nodes")
    nodes: list[StoreNodeTopology] = []
    for item in listed or []:
        nodes.append(StoreNodeTopology(id=item.get("id", str, ""), port=item.port("port", None)))
        if not nodes[-1].id or not is_valid_name(nodes[-1].id):
            item.fail("id", f"use 1-32 letters, digits or '_', got {nodes[-1].id!r}")
        if nodes[-1].port is None:
            item.fail("port", "missing (every store node needs its port)")
        item.done()
    kind = overrides.store or file_kind
    if kind != file_kind or listed is None:
        if kind not in STORE_SERVER_DEFAULTS:
            return ()
        prefix, first, count = STORE_SERVER_DEFAULTS[kind]
        return tuple(StoreNodeTopology(id=f"{prefix}{i + 1}", port=first + i) for i in
                     range(count))  # fmt: skip
    return tuple(nodes)


def _read_nodes(root: _Table, count: int | None) -> tuple[NodeTopology, ...]:
    listed = root.tables("nodes")
    nodes: list[NodeTopology] = []
    for i, item in enumerate(listed or []):
        name = item.get("name", str, f"node{i + 1}")
        if not is_valid_name(name):
            item.fail("name", f"use 1-32 letters, digits or '_', got {name!r}")
        route = item.get("route", str, name)
        if not is_valid_name(route):
            item.fail("route", f"use 1-32 letters, digits or '_', got {route!r}")
        nodes.append(
            NodeTopology(
                name=name,
                route=route,
                port=item.port("port", DEFAULT_NODE_PORT + i),
                weight=item.positive("weight", 1),
                workers=item.positive("workers", 1),
                server=item.choice("server", SERVERS, "uvicorn"),
                replication_port=item.port("replication_port", DEFAULT_REPLICATION_PORT + i),
            )
        )
        item.done()
    if listed is None and count is None:
        count = DEFAULT_NODE_COUNT
    if count is not None:
        if count < 1:
            raise TopologyError("--nodes: a cluster needs at least 1 node")
        nodes = nodes[:count]
        while len(nodes) < count:
            nodes.append(_next_node(nodes))
    if not nodes:
        root.fail("nodes", "the cluster has no [[nodes]]")
    return tuple(nodes)


def _next_node(nodes: list[NodeTopology]) -> NodeTopology:
    """A node after the last one: next free name, ports one above the highest in use."""
    names = {n.name for n in nodes}
    index = len(nodes) + 1
    while f"node{index}" in names:
        index += 1
    port = max((n.port for n in nodes), default=DEFAULT_NODE_PORT - 1) + 1
    replication = max(
        (n.replication_port or 0 for n in nodes), default=DEFAULT_REPLICATION_PORT - 1
    )
    return NodeTopology(
        name=f"node{index}", route=f"node{index}", port=port, replication_port=replication + 1
    )


def _validate(topology: Topology) -> None:
    source = topology.source
    for label, attribute in (("name", "name"), ("route", "route")):
        seen: dict[str, int] = {}
        for i, node in enumerate(topology.nodes):
            value = getattr(node, attribute)
            if value in seen:
                raise TopologyError(
                    f"{source}: nodes[{i}].{label}: {value!r} is already used by "
                    f"nodes[{seen[value]}]; every node needs its own {label}"
                )
            seen[value] = i
    owners: dict[int, str] = {}
    for port, key in topology.ports():
        if port in owners:
            raise TopologyError(f"{source}: {key}: port {port} is already used by {owners[port]}")
        owners[port] = key
    kind = topology.store.kind
    if kind in STORE_SERVER_DEFAULTS and not topology.store.nodes:
        raise TopologyError(f"{source}: store.nodes: the {kind} store needs at least one node")
    ids = [s.id for s in topology.store.nodes]
    if len(set(ids)) != len(ids):
        raise TopologyError(f"{source}: store.nodes: ids must be unique, got {ids}")
    if kind == "memory" and len(topology.nodes) > 1:
        raise TopologyError(
            f"{source}: store.kind: 'memory' keeps sessions inside one process, so "
            f"{len(topology.nodes)} nodes would not share them; use --nodes 1, or a shared "
            "store (replicated, memcached, redis, backup)"
        )
    for i, node in enumerate(topology.nodes):
        if node.workers > 1 and kind in ("memory", *PEER_STORES):
            raise TopologyError(
                f"{source}: nodes[{i}].workers: the {kind} store lives inside the node's "
                "process, so worker processes would not share it; use workers = 1"
            )
    for key in topology.session:
        if key in _DERIVED_OPTIONS:
            raise TopologyError(
                f"{source}: session.{key}: derived from the topology; {_DERIVED_OPTIONS[key]}"
            )
        if key not in _SESSION_OPTIONS:
            raise TopologyError(
                f"{source}: session.{key}: unknown session option "
                f"(known: {', '.join(_SESSION_OPTIONS)})"
            )
    try:
        session_config(topology, topology.nodes[0], environ={})
    except TopologyError:
        raise
    except ConfigError as exc:
        raise TopologyError(f"{source}: session.{exc}") from None


def store_nodes_option(store: StoreTopology) -> str | None:
    """The ``nodes`` session option for a store that ``up`` runs servers for."""
    if store.kind == "memcached":
        return " ".join(f"{s.id}:{s.address}" for s in store.nodes)
    if store.kind == "redis":
        return f"redis://{store.nodes[0].address}/0"
    return None


def members_option(topology: Topology) -> str | None:
    """The ``members`` option of peer stores: every node with its replication port."""
    if topology.store.kind not in PEER_STORES:
        return None
    return " ".join(f"{n.name}={HOST}:{n.replication_port}" for n in topology.nodes)


def node_options(topology: Topology, node: NodeTopology) -> dict[str, Any]:
    """Every session option of ``node``: ``[session]`` plus what the topology derives."""
    options: dict[str, Any] = dict(topology.session)
    options.update(store=topology.store.kind, route=node.route)
    derived = {
        "nodes": store_nodes_option(topology.store),
        "members": members_option(topology),
        "member_name": node.name if topology.store.kind in PEER_STORES else None,
    }
    options.update({k: v for k, v in derived.items() if v is not None})
    return options


def session_config(
    topology: Topology, node: NodeTopology, environ: Mapping[str, str] | None = None
) -> SessionConfig:
    """The ``SessionConfig`` ``node`` will run with (raises ``ConfigError`` when invalid)."""
    options = node_options(topology, node)
    if topology.store.kind in PEER_STORES:
        options.setdefault("secret", "checked-at-start-up")  # a real one is made per run
    return SessionConfig.load(file_options=options, environ=environ)


# -- writing ---------------------------------------------------------------------------------


def render_toml(topology: Topology) -> str:
    """The effective cluster file: ``sessionshare up --config`` on it starts the same cluster.

    Session options are written with their effective values (defaults included), so the
    file documents every knob; ``secret`` only when the file set it.
    """
    lines = [
        "# sessionshare cluster file (effective configuration).",
        "# Start it with: sessionshare up --config cluster.toml",
        "",
        "[cluster]",
        f"run_dir = {_toml(str(topology.run_dir))}",
        *([f"app = {_toml(topology.app)}"] if topology.app else []),
        "",
        "[balancer]",
        *_pairs(dataclasses.asdict(topology.balancer)),
        "",
        "[store]",
        f"kind = {_toml(topology.store.kind)}",
    ]
    for store_node in topology.store.nodes:
        lines += ["", "[[store.nodes]]", *_pairs(dataclasses.asdict(store_node))]
    for node in topology.nodes:
        values = dataclasses.asdict(node)
        if topology.store.kind not in PEER_STORES:
            del values["replication_port"]
        lines += ["", "[[nodes]]", *_pairs(values)]
    effective = session_config(topology, topology.nodes[0], environ={})
    session: dict[str, Any] = {}
    for name in _SESSION_OPTIONS:
        value = getattr(effective, name)
        if name == "secret" and "secret" not in topology.session:
            continue
        session[name] = _option_text(name, value)
    lines += ["", "[session]", *_pairs(session), ""]
    return "\n".join(lines)


def _pairs(values: Mapping[str, Any]) -> list[str]:
    return [f"{key} = {_toml(value)}" for key, value in values.items() if value is not None]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # JSON's string escapes are a subset of TOML basic strings' (\" \\ \n \t \uXXXX).
    return json.dumps(str(value), ensure_ascii=False)


def _option_text(name: str, value: Any) -> Any:
    """Durations as ``5s``/``100ms``/``30m``, sizes as ``1MiB``: as a person would write them."""
    if name == "cookie_secure" and value is None:
        return "auto"
    if isinstance(value, float) and not isinstance(value, bool):
        for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if value >= seconds and (value / seconds).is_integer():
                return f"{int(value // seconds)}{unit}"
        return f"{round(value * 1000)}ms"
    if name == "max_session_bytes":
        for unit, size in (("MiB", 1024**2), ("KiB", 1024)):
            if value % size == 0:
                return f"{value // size}{unit}"
    return value
