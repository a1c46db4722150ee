"""``sessionshare``: the command group. Each subcommand lives in a module of its own."""

from __future__ import annotations

import logging

import click

from sessionshare.cli.balancer_cmd import balancer_command, nginx_config_command
from sessionshare.cli.node import node_command
from sessionshare.cli.status import status_command
from sessionshare.cli.up import up_command

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sessionshare")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def cli(log_level: str) -> None:
    """Shared HTTP sessions for load-balanced clusters of Python web apps."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )


cli.add_command(node_command)
cli.add_command(balancer_command)
cli.add_command(nginx_config_command)
cli.add_command(up_command)
cli.add_command(status_command)


def main() -> None:
    cli(prog_name="sessionshare")
