"""The balancer's pure parts, without sockets: policies, health bookkeeping, options."""

from __future__ import annotations

from collections import Counter

import pytest

from sessionshare.balancer import Balancer
from sessionshare.balancer.config import (
    BalancerConfig,
    HealthConfig,
    NodeSpec,
    parse_node_option,
    parse_size,
)
from sessionshare.balancer.health import ActiveHealth, PassiveHealth
from sessionshare.balancer.policies import (
    IpHashPolicy,
    LeastConnPolicy,
    RequestInfo,
    RoundRobinPolicy,
    StickyPolicy,
)
from sessionshare.balancer.upstream import Node
from sessionshare.errors import ConfigError

TOKEN = "0123456789abcdef0123456789abcdef"


def make_nodes(*weights: int) -> list[Node]:
    specs = tuple(
        NodeSpec(name=f"n{i + 1}", host="127.0.0.1", port=9001 + i, weight=w)
        for i, w in enumerate(weights)
    )
    config = BalancerConfig(nodes=specs)
    return [Node(spec, config) for spec in specs]


def test_smooth_weighted_round_robin_matches_nginx_sequence() -> None:
    # nginx's own example (ngx_http_upstream_round_robin.c): weights 5, 1, 1.
    a, b, c = make_nodes(5, 1, 1)
    policy = RoundRobinPolicy()
    picks = [policy.choose([a, b, c]).name for _ in range(7)]
    assert picks == ["n1", "n1", "n2", "n1", "n3", "n1", "n1"]


def test_round_robin_shares_among_the_remaining_candidates() -> None:
    a, _, c = make_nodes(1, 1, 1)
    policy = RoundRobinPolicy()
    assert Counter(policy.choose([a, c]).name for _ in range(10)) == {"n1": 5, "n3": 5}


def test_ip_hash_is_stable_and_rehashes_past_a_missing_node() -> None:
    nodes = make_nodes(1, 1, 1)
    policy = IpHashPolicy(nodes)
    homes = {ip: policy.choose(nodes, RequestInfo(ip)) for ip in ("127.0.0.2", "127.0.0.3")}
    for ip, home in homes.items():
        assert all(policy.choose(nodes, RequestInfo(ip)) is home for _ in range(5))
        others = [n for n in nodes if n is not home]
        assert policy.choose(others, RequestInfo(ip)) in others
    spread = {policy.choose(nodes, RequestInfo(f"127.0.0.{i}")).name for i in range(2, 30)}
    assert spread == {"n1", "n2", "n3"}


def test_least_conn_picks_fewest_in_flight_per_weight_and_round_robins_ties() -> None:
    a, b = make_nodes(2, 1)
    policy = LeastConnPolicy()
    a.in_flight, b.in_flight = 3, 1  # 3/2 > 1/1
    assert policy.choose([a, b]) is b
    a.in_flight, b.in_flight = 1, 1  # 1/2 < 1/1
    assert policy.choose([a, b]) is a
    a.in_flight = b.in_flight = 0
    assert Counter(policy.choose([a, b]).name for _ in range(30)) == {"n1": 20, "n2": 10}


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        (f"SESSIONID={TOKEN}.n2", "n2"),
        (f"other=1; SESSIONID={TOKEN}-mc1.n2", "n2"),
        (f"SESSIONID={TOKEN}.nX", None),  # unknown route: round robin
        ("SESSIONID=forged.n2", None),  # not a valid id: no route (SPEC §2)
        (None, None),
    ],
)
def test_sticky_follows_a_valid_route_else_round_robin(
    cookie: str | None, expected: str | None
) -> None:
    nodes = make_nodes(1, 1, 1)
    policy = StickyPolicy(nodes, "SESSIONID")
    picks = [policy.choose(nodes, RequestInfo("127.0.0.1", cookie)).name for _ in range(6)]
    if expected is None:
        assert Counter(picks) == {"n1": 2, "n2": 2, "n3": 2}
    else:
        assert picks == [expected] * 6


def test_sticky_falls_back_when_the_route_node_is_not_a_candidate() -> None:
    nodes = make_nodes(1, 1)
    policy = StickyPolicy(nodes, "SESSIONID")
    request = RequestInfo("127.0.0.1", f"SESSIONID={TOKEN}.n1")
    assert policy.choose(nodes[1:], request).name == "n2"


def test_passive_health_follows_nginx_max_fails_and_fail_timeout() -> None:
    health = PassiveHealth(HealthConfig(max_fails=1, fail_timeout=10))
    health.selected(100.0)
    health.failed(100.0)
    assert not health.available(105.0)
    assert health.available(110.5)
    health.selected(110.5)  # this request is the probe: others wait another window
    assert not health.available(111.0)
    health.succeeded()
    assert health.available(111.0)


def test_passive_health_needs_max_fails_failures() -> None:
    health = PassiveHealth(HealthConfig(max_fails=2, fail_timeout=10))
    health.failed(1.0)
    assert health.available(2.0)
    health.failed(2.0)
    assert not health.available(3.0)


def test_active_health_goes_down_after_3_failures_and_up_after_2_successes() -> None:
    health = ActiveHealth(HealthConfig())
    assert [health.record(False) for _ in range(3)] == [False, False, True]
    assert not health.up
    assert health.record(True) is False
    assert health.record(False) is False  # a failure resets the rise streak
    assert [health.record(True) for _ in range(2)] == [False, True]
    assert health.up


def test_parse_node_option() -> None:
    spec = parse_node_option("node1=http://127.0.0.1:9001,weight=3,route=r1")
    assert (spec.name, spec.host, spec.port, spec.weight, spec.route) == (
        "node1", "127.0.0.1", 9001, 3, "r1",
    )  # fmt: skip
    assert parse_node_option("n2=127.0.0.1:9002").route == "n2"
    for bad, why in (
        ("node1", "expected name="),
        ("n=http://example.invalid:80", "loopback"),
        ("n=http://127.0.0.1:1,weight=0", "weight"),
        ("n=x,foo=1", "must be http://HOST:PORT"),
    ):
        with pytest.raises(ConfigError, match=why):
            parse_node_option(bad)


def test_parse_size() -> None:
    assert parse_size("10m") == parse_size("10MiB") == 10 * 1024 * 1024
    assert parse_size("32k") == 32 * 1024
    assert parse_size("1024") == 1024
    with pytest.raises(ConfigError, match="'lots'"):
        parse_size("lots")


def test_config_rejects_duplicate_routes_and_unknown_policy() -> None:
    spec = NodeSpec(name="a", host="127.0.0.1", port=1)
    twin = NodeSpec(name="b", host="127.0.0.1", port=2, route="a")
    with pytest.raises(ConfigError, match="unique"):
        BalancerConfig(nodes=(spec, twin))
    with pytest.raises(ConfigError, match="random"):
        BalancerConfig(nodes=(spec,), policy="random")  # type: ignore[arg-type]


def test_node_repr_tells_its_state() -> None:
    (node,) = make_nodes(2)
    node.in_flight = 1
    assert repr(node) == (
        "<Node n1 http://127.0.0.1:9001 up weight=2 in_flight=1 requests=0 failures=0 pool=0 idle>"
    )
    node.record_failure(10**9)
    assert " down " in repr(node)


def test_a_single_node_is_never_taken_out_passively() -> None:
    spec = NodeSpec(name="only", host="127.0.0.1", port=9001)
    balancer = Balancer(BalancerConfig(nodes=(spec,)))
    balancer.nodes[0].record_failure(10**9)
    assert balancer.nodes[0].available(10**9 + 1)
    two = Balancer(BalancerConfig(nodes=(spec, NodeSpec(name="b", host="127.0.0.1", port=2))))
    two.nodes[0].record_failure(10**9)
    assert not two.nodes[0].available(10**9 + 1)
