"""``sessionshare nginx-config``: the generated text, and nginx itself accepting it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sessionshare.balancer.config import POLICIES, BalancerConfig, NodeSpec
from sessionshare.balancer.nginx import NginxProcess, render_config
from sessionshare.cli.balancer_cmd import nginx_config_command
from tests.servers import require_binary

NODES = (
    NodeSpec(name="node1", host="127.0.0.1", port=9001, weight=3),
    NodeSpec(name="node2", host="127.0.0.1", port=9002),
)


def config(policy: str) -> BalancerConfig:
    return BalancerConfig(nodes=NODES, policy=policy, port=8080)  # type: ignore[arg-type]


def test_round_robin_upstream_has_weights_and_passive_health() -> None:
    text = render_config(config("round-robin"))
    assert "server 127.0.0.1:9001 weight=3 max_fails=1 fail_timeout=10s;" in text
    assert "server 127.0.0.1:9002 weight=1 max_fails=1 fail_timeout=10s;" in text
    assert "proxy_next_upstream error timeout invalid_header http_502;" in text
    assert "client_max_body_size 10485760;" in text
    assert "proxy_set_header Host $http_host;" in text


@pytest.mark.parametrize(("policy", "directive"), [("ip-hash", "ip_hash;"),
                                                   ("least-conn", "least_conn;")])  # fmt: skip
def test_policy_directives(policy: str, directive: str) -> None:
    assert directive in render_config(config(policy))


def test_sticky_before_1_29_6_maps_the_cookie_to_per_route_upstreams_with_backups() -> None:
    text = render_config(config("sticky"), (1, 22, 1))
    assert "map $cookie_SESSIONID $sessionshare_upstream {" in text
    assert '\\.node1$" sessionshare_route_node1;' in text
    route1 = text.split("upstream sessionshare_route_node1 {")[1].split("}")[0]
    assert "server 127.0.0.1:9001 weight=3 max_fails=1 fail_timeout=10s;" in route1
    assert "server 127.0.0.1:9002 weight=1 max_fails=1 fail_timeout=10s backup;" in route1
    assert "proxy_pass http://$sessionshare_upstream;" in text
    assert "sticky route" not in text


def test_sticky_from_1_29_6_uses_sticky_route() -> None:
    text = render_config(config("sticky"), (1, 29, 6))
    assert "sticky route $sessionshare_route;" in text
    assert "server 127.0.0.1:9001 weight=3 max_fails=1 fail_timeout=10s route=node1;" in text
    assert "backup" not in text


def test_retry_post_adds_non_idempotent() -> None:
    cfg = BalancerConfig(nodes=NODES, retry_post=True)
    expected = "proxy_next_upstream error timeout invalid_header http_502 non_idempotent;"
    assert expected in render_config(cfg)


def test_cli_prints_the_config_for_an_explicit_version() -> None:
    result = CliRunner().invoke(
        nginx_config_command,
        ["--node", "node1=http://127.0.0.1:9001,weight=3", "--node", "node2=127.0.0.1:9002",
         "--policy", "sticky", "--nginx-version", "1.29.6"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sticky route $sessionshare_route;" in result.output


def test_cli_rejects_a_node_off_the_loopback() -> None:
    result = CliRunner().invoke(nginx_config_command, ["--node", "a=http://10.1.2.3:80"])
    assert result.exit_code == 2
    assert "loopback" in result.output


@pytest.mark.parametrize("policy", POLICIES)
def test_nginx_t_accepts_every_generated_config(policy: str, tmp_path: Path) -> None:
    require_binary("nginx", "nginx-light")
    process = NginxProcess(config(policy), tmp_path / "prefix")
    process.write()
    process.check()  # raises NginxError with nginx's message
    text = process.conf_path.read_text()
    assert f"policy {policy}" in text
    version = subprocess.run([process.binary, "-v"], capture_output=True, text=True, check=False)
    assert ".".join(map(str, process.version)) in version.stderr
