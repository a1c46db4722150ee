"""The topology and limits of one balancer, as plain dataclasses.

One description feeds both the embedded balancer and the nginx config generator,
so ``--lb builtin`` and ``--lb nginx`` cannot drift apart: every default below is
written next to the nginx / HAProxy default it copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args
from urllib.parse import urlsplit

from sessionshare.core.ids import is_valid_name
from sessionshare.errors import ConfigError

__all__ = [
    "POLICIES",
    "BalancerConfig",
    "HealthConfig",
    "NodeSpec",
    "PolicyName",
    "parse_node_option",
    "parse_size",
]

PolicyName = Literal["round-robin", "ip-hash", "least-conn", "sticky"]
POLICIES: tuple[str, ...] = get_args(PolicyName)

# Traffic stays on the loopback: the balancer is a demo / test-cluster tool.
_LOOPBACK_PREFIXES = ("127.", "::1", "[::1]", "localhost")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """One app node as the balancer sees it: where it listens and how much it gets."""

    name: str
    host: str
    port: int
    #: nginx ``weight=``; smooth weighted round robin shares requests in this ratio.
    weight: int = 1
    #: The route suffix in session ids (Tomcat jvmRoute); the node name unless set.
    route: str = ""

    def __post_init__(self) -> None:
        if not is_valid_name(self.name):
            raise ConfigError(f"node name {self.name!r}: use 1-32 letters, digits or '_'")
        if not self.route:
            object.__setattr__(self, "route", self.name)
        if not is_valid_name(self.route):
            raise ConfigError(f"node {self.name}: route {self.route!r} is not a valid name")
        if self.weight < 1:
            raise ConfigError(f"node {self.name}: weight must be >= 1, got {self.weight}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"node {self.name}: port {self.port} is out of range")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def address(self) -> str:
        """``host:port`` as nginx's ``server`` directive wants it."""
        return self.url.removeprefix("http://")


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    """Passive checks as nginx, active checks as HAProxy (their defaults, SPEC §5)."""

    #: nginx ``max_fails``: failures within ``fail_timeout`` that take a node out.
    max_fails: int = 1
    #: nginx ``fail_timeout``: both the counting window and the time out, in seconds.
    fail_timeout: float = 10.0
    #: HAProxy ``inter``: seconds between two ``GET /healthz`` probes; 0 turns probes off.
    interval: float = 2.0
    #: HAProxy ``fall``: consecutive failed probes before a node is down.
    fall: int = 3
    #: HAProxy ``rise``: consecutive good probes before a down node is up again.
    rise: int = 2
    #: HAProxy ``timeout check``; one probe may take this long, in seconds.
    timeout: float = 1.0
    path: str = "/healthz"


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancerConfig:
    """Everything one balancer needs; the CLI and the cluster supervisor build it."""

    nodes: tuple[NodeSpec, ...]
    policy: PolicyName = "round-robin"
    host: str = "127.0.0.1"
    port: int = 8080
    health: HealthConfig = field(default_factory=HealthConfig)
    #: nginx ``proxy_connect_timeout`` is 60 s; a node on the loopback that has not
    #: accepted within 5 s is dead for our purposes.
    connect_timeout: float = 5.0
    #: nginx ``proxy_read_timeout`` / SPEC §5: 60 s of silence from a node gives 504.
    read_timeout: float = 60.0
    #: SPEC §5: a request head above 32 KiB is answered 431.
    max_header_bytes: int = 32 * 1024
    #: nginx ``client_max_body_size`` role; SPEC §5 default 10 MiB → 413.
    max_body_bytes: int = 10 * 1024 * 1024
    #: nginx ``proxy_next_upstream non_idempotent``: off, POST is never sent twice.
    retry_post: bool = False
    #: nginx ``proxy_next_upstream_tries`` 0 means "all nodes"; so does ``None`` here.
    max_tries: int | None = None
    cookie_name: str = "SESSIONID"
    #: nginx ``keepalive_timeout`` 75 s for idle client connections.
    client_keepalive: float = 75.0
    #: Idle pooled connections to a node are dropped after this many seconds: below
    #: uvicorn's 5 s ``timeout_keep_alive`` so we never reuse one the node is closing.
    upstream_keepalive: float = 4.0
    #: nginx ``keepalive 32`` in an upstream block: idle connections kept per node.
    pool_size: int = 32

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ConfigError("a balancer needs at least one --node")
        if self.policy not in POLICIES:
            raise ConfigError(f"policy {self.policy!r}: choose one of {', '.join(POLICIES)}")
        names = [n.name for n in self.nodes]
        routes = [n.route for n in self.nodes]
        if len(set(names)) != len(names) or len(set(routes)) != len(routes):
            raise ConfigError(f"node names and routes must be unique: {names} / {routes}")

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise KeyError(name)


def parse_size(text: str) -> int:
    """``"10m"``, ``"10MiB"``, ``"512k"`` or ``"1024"`` → bytes (nginx size syntax too)."""
    units = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = raw[-1:] if raw[-1:] in units else ""
    number = raw[: len(raw) - len(unit)]
    try:
        return int(float(number) * units[unit])
    except ValueError:
        raise ConfigError(f"size {text!r}: write e.g. 10m, 512k or 1048576") from None


def parse_node_option(text: str) -> NodeSpec:
    """Parse ``name=http://127.0.0.1:9001[,weight=3][,route=r1]`` (the ``--node`` option)."""
    head, *params = text.split(",")
    name, sep, url = head.partition("=")
    if not sep:
        raise ConfigError(f"--node {text!r}: expected name=http://127.0.0.1:PORT[,weight=N]")
    parts = urlsplit(url if "//" in url else f"http://{url}")
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise ConfigError(f"--node {text!r}: the URL must be http://HOST:PORT")
    if not parts.hostname.startswith(_LOOPBACK_PREFIXES):
        raise ConfigError(f"--node {text!r}: nodes must be on the loopback (127.x or ::1)")
    options: dict[str, str] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep or key not in ("weight", "route"):
            raise ConfigError(f"--node {text!r}: unknown option {param!r} (weight=, route=)")
        options[key] = value
    try:
        weight = int(options.get("weight", "1"))
    except ValueError:
        raise ConfigError(f"--node {text!r}: weight must be an integer") from None
    return NodeSpec(
        name=name,
        host=parts.hostname,
        port=parts.port,
        weight=weight,
        route=options.get("route", ""),
    )
