"""``sessionshare status``: what runs where, from a running cluster's ``/_cluster/status``.

``--json`` prints exactly SPEC §6's document (scripts depend on its keys); the table shows
the same, with rich. The URL defaults to the cluster ``up`` started from this directory
(``run/cluster.json``), then to http://127.0.0.1:8080.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sessionshare.cluster.status import SPEC_KEYS, spec_document

__all__ = ["status_command"]

DEFAULT_URL = "http://127.0.0.1:8080"


def _default_url() -> str:
    try:
        return str(json.loads(Path("run/cluster.json").read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_URL


def fetch_status(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """``GET <url>/_cluster/status``; ``click.ClickException`` saying what went wrong."""
    target = url.rstrip("/") + "/_cluster/status"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            document: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as exc:
        raise click.ClickException(
            f"{target} answered {exc.code}: is this a sessionshare balancer?"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(
            f"no cluster answers at {url} ({reason}); is `sessionshare up` running?"
        ) from None
    except ValueError:
        raise click.ClickException(f"{target} did not answer JSON") from None
    return document


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "[green]yes[/]" if value else "[red]NO[/]"
    return str(value)


@click.command("status")
@click.option(
    "--url", default=None, help=f"Balancer URL [default: run/cluster.json, {DEFAULT_URL}]."
)
@click.option("--json", "as_json", is_flag=True, help="Print SPEC §6's JSON document.")
def status_command(url: str | None, as_json: bool) -> None:
    """Show the cluster's balancer, nodes and stores."""
    document = spec_document(fetch_status(url or _default_url()))
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    console = Console(highlight=False)
    balancer = document["balancer"]
    console.print(
        f"balancer {balancer['url']}  policy {balancer['policy']}  pid {_cell(balancer['pid'])}"
    )
    for section in ("nodes", "stores"):
        table = Table(title=section, title_justify="left")
        for key in SPEC_KEYS[section]:
            numeric = key in ("pid", "requests", "sessions")
            table.add_column(key, justify="right" if numeric else "left")
        for row in document[section]:
            table.add_row(*(_cell(row.get(key)) for key in SPEC_KEYS[section]))
        console.print(table)
