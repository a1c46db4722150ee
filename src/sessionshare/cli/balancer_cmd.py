"""``sessionshare balancer`` and ``sessionshare nginx-config``.

Both commands take the same topology options (one decorator, ``topology_options``), so
the nginx config printed for a command line is exactly what ``--lb nginx`` would run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from sessionshare.balancer.config import (
    POLICIES,
    BalancerConfig,
    HealthConfig,
    PolicyName,
    parse_node_option,
    parse_size,
)
from sessionshare.errors import SessionShareError

__all__ = ["balancer_command", "build_config", "nginx_config_command", "topology_options"]

F = TypeVar("F", bound=Callable[..., Any])

_TOPOLOGY_OPTIONS = (
    click.option(
        "--node",
        "nodes",
        multiple=True,
        required=True,
        metavar="NAME=URL[,weight=N][,route=R]",
        help="An app node, e.g. node1=http://127.0.0.1:9001,weight=3 (repeat per node).",
    ),
    click.option("--policy", type=click.Choice(POLICIES), default="round-robin", show_default=True),
    click.option("--host", default="127.0.0.1", show_default=True),
    click.option("--port", default=8080, show_default=True, type=int),
    click.option("--max-body", default="10m", show_default=True, help="Larger bodies get 413."),
    click.option("--max-header", default="32k", show_default=True, help="Larger heads get 431."),
    click.option(
        "--timeout",
        default=60.0,
        show_default=True,
        type=float,
        help="Seconds a node may stay silent before 504 (nginx proxy_read_timeout).",
    ),
    click.option("--connect-timeout", default=5.0, show_default=True, type=float),
    click.option(
        "--retry-post/--no-retry-post",
        default=False,
        show_default=True,
        help="Also retry POST on another node (nginx non_idempotent).",
    ),
    click.option("--max-fails", default=1, show_default=True, type=int),
    click.option("--fail-timeout", default=10.0, show_default=True, type=float),
    click.option(
        "--health-interval",
        default=2.0,
        show_default=True,
        type=float,
        help="Seconds between GET /healthz probes; 0 disables active checks.",
    ),
    click.option("--cookie-name", default="SESSIONID", show_default=True),
)


def topology_options(func: F) -> F:
    """Apply the options shared by ``balancer`` and ``nginx-config``."""
    for option in reversed(_TOPOLOGY_OPTIONS):
        func = option(func)
    return func


def build_config(
    *,
    nodes: tuple[str, ...],
    policy: str,
    host: str,
    port: int,
    max_body: str,
    max_header: str,
    timeout: float,
    connect_timeout: float,
    retry_post: bool,
    max_fails: int,
    fail_timeout: float,
    health_interval: float,
    cookie_name: str,
) -> BalancerConfig:
    """The ``BalancerConfig`` for the topology options (also used by the cluster CLI)."""
    return BalancerConfig(
        nodes=tuple(parse_node_option(text) for text in nodes),
        policy=cast(PolicyName, policy),
        host=host,
        port=port,
        health=HealthConfig(
            max_fails=max_fails, fail_timeout=fail_timeout, interval=health_interval
        ),
        connect_timeout=connect_timeout,
        read_timeout=timeout,
        max_header_bytes=parse_size(max_header),
        max_body_bytes=parse_size(max_body),
        retry_post=retry_post,
        cookie_name=cookie_name,
    )


def _config_or_exit(options: dict[str, Any]) -> BalancerConfig:
    try:
        return build_config(**options)
    except SessionShareError as exc:
        raise click.UsageError(str(exc)) from None


def _new_event_loop(loop: str) -> asyncio.AbstractEventLoop:
    """uvloop when asked or available: it measured faster (docs/balancer.md)."""
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise click.UsageError("--loop uvloop: pip install uvloop") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


async def _run_builtin(config: BalancerConfig) -> None:
    from sessionshare.balancer.proxy import Balancer

    balancer = Balancer(config)
    await balancer.start()
    click.echo(
        f"sessionshare balancer on {balancer.url} ({config.policy}, {len(config.nodes)} nodes)",
        err=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await balancer.stop()


def _run_nginx(config: BalancerConfig, prefix: Path | None, nginx_bin: str) -> None:
    from sessionshare.balancer.nginx import NginxProcess

    process = NginxProcess(config, prefix, binary=nginx_bin)
    try:
        process.start()
    except SessionShareError as exc:
        process.cleanup()
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"nginx {'.'.join(map(str, process.version))} on {process.url} (prefix {process.prefix})",
        err=True,
    )

    def _forward(signum: int, frame: object) -> None:
        # Only signal here: waiting inside a handler would re-enter Popen.wait below.
        process.signal_stop()

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    code = 0
    with contextlib.suppress(KeyboardInterrupt):
        code = process.wait()
    process.stop()
    if code <= 0:  # stopped by us or a signal: the temp prefix (logs) is not needed
        process.cleanup()
    sys.exit(code if code > 0 else 0)


@click.command("balancer")
@topology_options
@click.option(
    "--lb",
    type=click.Choice(["builtin", "nginx"]),
    default="builtin",
    show_default=True,
    help="builtin: the embedded asyncio balancer; nginx: real nginx as a child process.",
)
@click.option(
    "--loop",
    "loop_name",
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    default="auto",
    show_default=True,
    help="Event loop of the embedded balancer.",
)
@click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="nginx prefix directory (config, logs, temp files); a temp dir by default.",
)
@click.option("--nginx-bin", default="nginx", show_default=True)
def balancer_command(
    lb: str, loop_name: str, prefix: Path | None, nginx_bin: str, **options: Any
) -> None:
    """Run a load balancer in front of app nodes (SPEC §5)."""
    config = _config_or_exit(options)
    if lb == "nginx":
        _run_nginx(config, prefix, nginx_bin)
        return
    with asyncio.Runner(loop_factory=functools.partial(_new_event_loop, loop_name)) as runner:
        runner.run(_run_builtin(config))


@click.command("nginx-config")
@topology_options
@click.option(
    "--nginx-version",
    default=None,
    metavar="X.Y.Z",
    help="Target this nginx version instead of asking `nginx -v` (sticky route needs 1.29.6).",
)
@click.option("--nginx-bin", default="nginx", show_default=True)
def nginx_config_command(nginx_version: str | None, nginx_bin: str, **options: Any) -> None:
    """Print the nginx config for the same topology as ``sessionshare balancer``."""
    from sessionshare.balancer import nginx

    config = _config_or_exit(options)
    try:
        if nginx_version is not None:
            parts = tuple(int(p) for p in nginx_version.split("."))
            version = (*parts, 0, 0, 0)[:3]
        else:
            version = nginx.nginx_version(nginx_bin)
        click.echo(nginx.render_config(config, cast(tuple[int, int, int], version)), nl=False)
    except ValueError:
        raise click.UsageError(f"--nginx-version {nginx_version!r}: write e.g. 1.29.6") from None
    except SessionShareError as exc:
        raise click.ClickException(str(exc)) from None
