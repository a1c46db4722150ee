"""``sessionshare node``: run one app node on a real server, the demo or ``--app``.

uvicorn serves the ASGI demo (the default); ``--server gunicorn`` serves the WSGI
demo with gunicorn's sync workers. ``--app module:app`` serves the user's own app
instead, on gunicorn when it is a WSGI app and on uvicorn when it is an ASGI app
(``cluster/app_node.py``). Every server reads the node and session options from
``SESSIONSHARE_*`` environment variables, which this command sets: that is the
one way options reach every worker process of either server, and the way every
integration (Flask, Django, Starlette, the middlewares) is configured here.
"""

from __future__ import annotations

import os
import shutil
import sys

import click

from sessionshare.config import SessionConfig
from sessionshare.errors import ConfigError
from sessionshare.stores.factory import create_store

__all__ = ["node_command"]


@click.command("node")
@click.option("--name", default="node1", show_default=True, help="Node name; also its route.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9001, show_default=True, type=int)
@click.option(
    "--app",
    "app_spec",
    default=None,
    metavar="MODULE:APP",
    help="Serve this WSGI or ASGI app instead of the demo, e.g. examples.flask_app:app.",
)
@click.option(
    "--server",
    type=click.Choice(["uvicorn", "gunicorn"]),
    default=None,
    help="uvicorn runs the ASGI demo, gunicorn the WSGI demo [default: uvicorn; with "
    "--app: gunicorn for a WSGI app, uvicorn for an ASGI app].",
)
@click.option("--workers", "-w", default=1, show_default=True, type=int, help="Worker processes.")
@click.option("--store", default=None, help="Session store (SPEC §3); default memory.")
@click.option("--nodes", default=None, help="Store nodes, e.g. 'n1:127.0.0.1:11211 n2:…'.")
@click.option("--sticky/--non-sticky", default=None)
@click.option("--locking", default=None, help="none, all, auto or uri:<regex>.")
@click.option(
    "--members",
    default=None,
    help="replicated/backup: every member, e.g. 'node1=127.0.0.1:4001 node2=127.0.0.1:4002'.",
)
@click.option(
    "--member-name", default=None, help="replicated/backup: this member (default: --name)."
)
@click.option(
    "--secret",
    default=None,
    envvar="SESSIONSHARE_SECRET",
    help="Shared signing key (replication frames, pickle); prefer the env var.",
)
@click.option(
    "--option",
    "-o",
    "extra",
    multiple=True,
    metavar="NAME=VALUE",
    help="Any other session option, e.g. -o max_inactive=10m.",
)
def node_command(
    name: str,
    host: str,
    port: int,
    app_spec: str | None,
    server: str | None,
    workers: int,
    store: str | None,
    nodes: str | None,
    sticky: bool | None,
    locking: str | None,
    members: str | None,
    member_name: str | None,
    secret: str | None,
    extra: tuple[str, ...],
) -> None:
    """Run a demo app node (SPEC §6 endpoints) on HOST:PORT."""
    options: dict[str, object] = {
        "store": store,
        "nodes": nodes,
        "sticky": sticky,
        "locking": locking,
        "route": name,
        "members": members,
        "member_name": member_name,
        "secret": secret,
    }
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--option")
        options[key.strip()] = value
    try:
        config = SessionConfig.load(**options)
        create_store(config).close()  # fail now, naming the bad part, not at the first request
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    env = {
        f"SESSIONSHARE_{key.upper()}": _env_value(value)
        for key, value in options.items()
        if value is not None
    }
    env |= {"SESSIONSHARE_NODE_NAME": name, "SESSIONSHARE_NODE_PORT": str(port)}
    os.environ.update(env)
    asgi_target, wsgi_target = _targets(app_spec, server)
    server = server or ("uvicorn" if asgi_target else "gunicorn")
    click.echo(
        f"sessionshare node {name}: http://{host}:{port}/ ({app_spec or 'demo'} on {server}, "
        f"{workers} worker(s), store={config.store})"
    )
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            asgi_target,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
        )
        return
    gunicorn = shutil.which("gunicorn") or os.path.join(os.path.dirname(sys.executable), "gunicorn")
    if not os.path.exists(gunicorn):
        raise click.ClickException("gunicorn is not installed: pip install 'sessionshare[cluster]'")
    os.execv(
        gunicorn,
        [
            gunicorn,
            "--workers",
            str(workers),
            "--bind",
            f"{host}:{port}",
            "--log-level",
            "warning",
            wsgi_target,
        ],
    )


def _targets(app_spec: str | None, server: str | None) -> tuple[str | None, str]:
    """The uvicorn factory (``None`` for a WSGI app) and the gunicorn app of this node.

    A user's app is imported here once, before any server starts, so a bad ``--app``
    or a WSGI app on uvicorn fails with one line instead of in every worker.
    """
    if app_spec is None:
        return "sessionshare.demo.asgi:create_app_from_env", (
            "sessionshare.demo.wsgi:create_app_from_env()"
        )
    from sessionshare.cluster.app_node import APP_ENV, interface_of, load_app

    try:
        interface = interface_of(load_app(app_spec))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    wanted = "uvicorn" if interface == "asgi" else "gunicorn"
    if server is not None and server != wanted:
        raise click.ClickException(
            f"--app {app_spec} is a {interface.upper()} app: serve it with --server {wanted}"
        )
    os.environ[APP_ENV] = app_spec
    if interface == "asgi":
        return "sessionshare.cluster.app_node:asgi_from_env", ""
    return None, "sessionshare.cluster.app_node:wsgi_from_env()"


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
