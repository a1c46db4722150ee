"""``sessionshare up``: a whole cluster in the foreground (SPEC §6).

Options override the cluster file (``--config``, or ``./cluster.toml`` when present),
which overrides the built-in defaults: 2 demo nodes, the ``replicated`` store, the
embedded balancer on port 8080. Ctrl-C or SIGTERM stops everything in reverse order.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from sessionshare.balancer.config import POLICIES
from sessionshare.cluster.events import BAD_KINDS, Event
from sessionshare.cluster.runner import ClusterRunner, install_signal_handlers, topology_path
from sessionshare.cluster.supervisor import StartError
from sessionshare.cluster.topology import LB_KINDS, Overrides, load_topology, render_toml
from sessionshare.config import STORE_KINDS
from sessionshare.errors import SessionShareError

__all__ = ["up_command"]


@click.command("up")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Cluster file (TOML); default ./cluster.toml when it exists.",
)
@click.option("--nodes", "node_count", type=click.IntRange(min=1), default=None,
              help="Number of app nodes [default: 2].")  # fmt: skip
@click.option("--store", type=click.Choice(STORE_KINDS), default=None,
              help="Session store [default: replicated].")  # fmt: skip
@click.option("--sticky/--non-sticky", default=None, help="Sticky sessions (MSM sticky).")
@click.option("--locking", default=None, help="none, all, auto or uri:<regex> [default: auto].")
@click.option("--lb", type=click.Choice(LB_KINDS), default=None,
              help="Balancer: builtin (embedded) or nginx [default: builtin].")  # fmt: skip
@click.option("--policy", type=click.Choice(POLICIES), default=None,
              help="Balancing policy [default: round-robin].")  # fmt: skip
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Balancer port [default: 8080].")  # fmt: skip
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Logs and state [default: ./run].")  # fmt: skip
@click.option("--app", "app_spec", default=None, metavar="MODULE:APP",
              help="Run this WSGI/ASGI app on every node instead of the demo.")  # fmt: skip
@click.option("--print-config", is_flag=True, help="Print the effective cluster file and exit.")
def up_command(
    config_path: Path | None,
    node_count: int | None,
    store: str | None,
    sticky: bool | None,
    locking: str | None,
    lb: str | None,
    policy: str | None,
    port: int | None,
    run_dir: Path | None,
    app_spec: str | None,
    print_config: bool,
) -> None:
    """Start stores, app nodes and a balancer; stop them all on Ctrl-C."""
    overrides = Overrides(
        nodes=node_count, store=store, sticky=sticky, locking=locking, lb=lb, policy=policy,
        port=port, run_dir=run_dir, app=app_spec,
    )  # fmt: skip
    try:
        topology = load_topology(topology_path(config_path), overrides)
    except SessionShareError as exc:
        raise click.ClickException(str(exc)) from None
    if print_config:
        click.echo(render_toml(topology), nl=False)
        return
    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)
    runner = ClusterRunner(
        topology, on_ready=lambda r: _print_ready(r, console), on_event=_event_printer(errors)
    )
    try:
        runner.preflight()
    except SessionShareError as exc:
        raise click.ClickException(str(exc)) from None

    async def main() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        await runner.run(stop)

    try:
        asyncio.run(main())
    except StartError as exc:
        raise click.ClickException(f"{exc}\nEverything that had started was stopped.") from None
    errors.print("sessionshare up: everything stopped")


def _event_printer(console: Console) -> Callable[[Event], None]:
    def show(event: Event) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
        style = "red" if event.kind in BAD_KINDS else "dim"
        console.print(f"[{style}]{stamp} {event.message}[/]")

    return show


def _print_ready(runner: ClusterRunner, console: Console) -> None:
    """The table of what runs where, then the URL (SPEC §6)."""
    assert runner.supervisor is not None
    table = Table(title="sessionshare cluster", title_justify="left")
    for column in ("role", "name", "pid", "address", "state", "log"):
        table.add_column(column)
    lb = runner.topology.balancer
    if lb.kind == "builtin":
        table.add_row("balancer", "builtin", str(os.getpid()), lb.url.removeprefix("http://"),
                      "healthy", "(this process)")  # fmt: skip
    for child in reversed(runner.supervisor.children):
        table.add_row(child.spec.role, child.name, str(child.pid), child.spec.address,
                      child.state.value, str(child.log_path))  # fmt: skip
    console.print(table)
    store = runner.topology.store.kind
    app = runner.topology.app or "the demo app"
    console.print(
        f"[bold]{runner.url}/[/]  ({app} on {len(runner.topology.nodes)} nodes, store {store}, "
        f"{lb.kind} balancer, {lb.policy})"
    )
    console.print(
        f"dashboard: {runner.url}/_cluster/   status: sessionshare status --url {runner.url}"
    )
    console.print("Ctrl-C stops everything.")
