"""Which node gets a request: the four policies of SPEC §5, each as nginx does it.

A policy sees only the candidate nodes (available and not yet tried for this request)
and a little about the request; it never does I/O, so tests drive it with plain lists.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from sessionshare.balancer.config import PolicyName
from sessionshare.balancer.upstream import Node
from sessionshare.core.cookies import read_cookie_values
from sessionshare.core.ids import route_of

__all__ = [
    "IpHashPolicy",
    "LeastConnPolicy",
    "Policy",
    "RequestInfo",
    "RoundRobinPolicy",
    "StickyPolicy",
    "make_policy",
]


@dataclass(slots=True)  # not frozen: built per request, and frozen __init__ is slower
class RequestInfo:
    """What a policy may look at: the client address and the ``Cookie`` header."""

    client_ip: str
    cookie: str | None = None


class Policy(ABC):
    name: PolicyName
    #: Whether ``choose`` reads ``RequestInfo.cookie`` (the proxy skips the lookup if not).
    uses_cookie = False

    @abstractmethod
    def choose(self, candidates: Sequence[Node], request: RequestInfo) -> Node:
        """Pick one of ``candidates`` (never empty)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class RoundRobinPolicy(Policy):
    """nginx's smooth weighted round robin (ngx_http_upstream_get_peer).

    Each pick adds every candidate's weight to its ``current`` score, takes the highest
    and subtracts the total from it. Weights 5:1:1 give a,a,b,a,c,a,a rather than
    a,a,a,a,a,b,c: the heavy node never gets a burst, which plain weighted lists do.
    """

    name: PolicyName = "round-robin"

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def choose(self, candidates: Sequence[Node], request: RequestInfo | None = None) -> Node:
        best: Node | None = None
        best_score = 0
        total = 0
        for node in candidates:
            score = self._current.get(node.name, 0) + node.weight
            self._current[node.name] = score
            total += node.weight
            if best is None or score > best_score:
                best, best_score = node, score
        assert best is not None, "choose() needs at least one candidate"
        self._current[best.name] = best_score - total
        return best


class IpHashPolicy(Policy):
    """nginx ``ip_hash``: the client address picks the node, rehashing past dead ones.

    Same hash and weighting as nginx (start 89, ``hash * 113 + byte`` mod 6271, up to 20
    rehashes, then round robin), with one difference: nginx hashes only the first three
    bytes of an IPv4 address (a /24 sticks together); we hash all of it, because on a
    test loopback 127.0.0.2, 127.0.0.3, … are the "different clients".
    """

    name: PolicyName = "ip-hash"
    MAX_TRIES = 20

    def __init__(self, all_nodes: Sequence[Node]) -> None:
        # The weighted wheel is built over *all* nodes, so a node going down does not move
        # the clients of the others (nginx walks the full peer list the same way).
        self._all = tuple(all_nodes)
        self._total = sum(n.weight for n in self._all)
        self._fallback = RoundRobinPolicy()

    def choose(self, candidates: Sequence[Node], request: RequestInfo) -> Node:
        allowed = {id(n) for n in candidates}
        try:
            key = ipaddress.ip_address(request.client_ip).packed
        except ValueError:
            key = request.client_ip.encode()
        hash_ = 89
        for _ in range(self.MAX_TRIES):
            for byte in key:
                hash_ = (hash_ * 113 + byte) % 6271
            node = self._at(hash_ % self._total)
            if id(node) in allowed:
                return node
        return self._fallback.choose(candidates)

    def _at(self, point: int) -> Node:
        for node in self._all:
            if point < node.weight:
                return node
            point -= node.weight
        raise AssertionError("point beyond the total weight")


class LeastConnPolicy(Policy):
    """nginx ``least_conn``: fewest in-flight requests per unit of weight; ties by round robin."""

    name: PolicyName = "least-conn"

    def __init__(self) -> None:
        self._tie_break = RoundRobinPolicy()

    def choose(self, candidates: Sequence[Node], request: RequestInfo | None = None) -> Node:
        # Compare in_flight/weight without division: a*wb < b*wa (nginx does the same).
        best = [candidates[0]]
        for node in candidates[1:]:
            lhs = node.in_flight * best[0].weight
            rhs = best[0].in_flight * node.weight
            if lhs < rhs:
                best = [node]
            elif lhs == rhs:
                best.append(node)
        return best[0] if len(best) == 1 else self._tie_break.choose(best)


class StickyPolicy(Policy):
    """Route from the session id's ``.route`` suffix (SPEC §2), else round robin.

    The balancer only follows routes; it never rewrites them. When a route's node is down
    the request goes elsewhere by round robin and *that* node re-issues the cookie with
    its own route (Tomcat's JvmRouteBinderValve), so the session moves once and stays.
    """

    name: PolicyName = "sticky"
    uses_cookie = True

    def __init__(self, all_nodes: Sequence[Node], cookie_name: str) -> None:
        self.cookie_name = cookie_name
        self._by_route = {n.spec.route: n for n in all_nodes}
        self._fallback = RoundRobinPolicy()

    def route(self, cookie: str | None) -> str | None:
        for value in read_cookie_values(cookie, self.cookie_name):
            route = route_of(value)
            if route is not None:
                return route
        return None

    def choose(self, candidates: Sequence[Node], request: RequestInfo) -> Node:
        route = self.route(request.cookie) if request.cookie else None
        node = self._by_route.get(route) if route is not None else None
        if node is not None and node in candidates:
            return node
        return self._fallback.choose(candidates)


def make_policy(name: PolicyName, nodes: Sequence[Node], cookie_name: str) -> Policy:
    match name:
        case "round-robin":
            return RoundRobinPolicy()
        case "ip-hash":
            return IpHashPolicy(nodes)
        case "least-conn":
            return LeastConnPolicy()
        case "sticky":
            return StickyPolicy(nodes, cookie_name)
    raise ValueError(f"unknown policy {name!r}")
