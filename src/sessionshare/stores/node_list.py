"""The ``nodes`` / ``failover_nodes`` options of the memcached store, parsed once at start-up.

Same format as memcached-session-manager's ``memcachedNodes`` and ``failoverNodes``::

    nodes = "n1:127.0.0.1:11211 n2:127.0.0.1:11212"   # id:host:port, spaces or commas
    nodes = "127.0.0.1:11211"                          # host:port alone: one node, id "n1"
    failover_nodes = "n2"                              # ids from ``nodes``

A malformed list raises ``ConfigError`` naming the bad part, so a typo stops the app at
start-up instead of surfacing as a 503 at the first request. Node ids travel in every
session id (``<token>-<node>``), so they use the same short charset as routes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sessionshare.core.ids import is_valid_name
from sessionshare.errors import ConfigError

__all__ = ["NodeSpec", "parse_failover_nodes", "parse_nodes"]

#: id given to the only node of a ``host:port`` list (MSM calls it by its address).
SINGLE_NODE_ID = "n1"

_SEPARATORS = re.compile(r"[\s,]+")
# host: a name or an IPv4 address; IPv6 literals go in brackets ([::1]).
_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*)"
_WITH_ID = re.compile(rf"(?P<id>[^:]+):(?P<host>{_HOST}):(?P<port>\d{{1,5}})")
_WITHOUT_ID = re.compile(rf"(?P<host>{_HOST}):(?P<port>\d{{1,5}})")


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One memcached server: the id used in session ids, and its address."""

    id: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _port(text: str, part: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ConfigError(f"nodes: port out of range in {part!r}")
    return port


def parse_nodes(text: str | None) -> list[NodeSpec]:
    """``"n1:host:port n2:host:port"`` (or a lone ``host:port``) -> node specs, in order.

    Order matters: a session's backup lives on the next node of this list (MSM).
    """
    parts = [p for p in _SEPARATORS.split(text or "") if p]
    if not parts:
        raise ConfigError(
            "nodes: the memcached store needs a node list such as "
            "'n1:127.0.0.1:11211 n2:127.0.0.1:11212'"
        )
    if len(parts) == 1 and (alone := _WITHOUT_ID.fullmatch(parts[0])) is not None:
        host = alone["host"].strip("[]")
        return [NodeSpec(SINGLE_NODE_ID, host, _port(alone["port"], parts[0]))]
    specs: list[NodeSpec] = []
    for part in parts:
        match = _WITH_ID.fullmatch(part)
        if match is None:
            raise ConfigError(
                f"nodes: cannot parse {part!r}; expected id:host:port such as "
                "'n1:127.0.0.1:11211' (host:port alone only when there is one node)"
            )
        if not is_valid_name(match["id"]):
            raise ConfigError(
                f"nodes: bad node id {match['id']!r} in {part!r}; use 1-32 of A-Z a-z 0-9 _ "
                "(it becomes part of session ids)"
            )
        spec = NodeSpec(match["id"], match["host"].strip("[]"), _port(match["port"], part))
        if any(s.id == spec.id for s in specs):
            raise ConfigError(f"nodes: node id {spec.id!r} appears twice (in {part!r})")
        if any(s.address == spec.address for s in specs):
            raise ConfigError(f"nodes: address {spec.address} appears twice (in {part!r})")
        specs.append(spec)
    return specs


def parse_failover_nodes(text: str | None, nodes: list[NodeSpec], *, sticky: bool) -> list[str]:
    """Ids of the nodes used only when all the others are down (MSM ``failoverNodes``).

    Refused in non-sticky mode (every node already serves every request, as in MSM) and
    with a single node (there would be no other node to prefer).
    """
    ids = [p for p in _SEPARATORS.split(text or "") if p]
    if not ids:
        return []
    if not sticky:
        raise ConfigError(
            "failover_nodes: only allowed with sticky = true (in non-sticky mode every "
            "node holds sessions and backups, as in memcached-session-manager)"
        )
    if len(nodes) < 2:
        raise ConfigError(
            "failover_nodes: needs at least two nodes (with one node there is nothing "
            "to fail over from)"
        )
    known = {spec.id for spec in nodes}
    for node_id in ids:
        if node_id not in known:
            raise ConfigError(
                f"failover_nodes: {node_id!r} is not one of the nodes ({', '.join(sorted(known))})"
            )
    if set(ids) >= known:
        raise ConfigError("failover_nodes: at least one node must not be a failover node")
    return ids
