"""The ``sessionshare`` command line (click), installed with ``sessionshare[cluster]``.

``main`` is the console script's entry point. It checks for the cluster extra before
importing the commands, so a library-only install (``pip install sessionshare[flask]``)
that runs ``sessionshare`` gets the ``pip install`` line instead of a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

#: modules the commands import, each installed by the ``cluster`` extra.
_CLUSTER_MODULES = ("click", "rich", "uvicorn", "starlette", "httptools")


def main() -> None:
    from sessionshare.extras import MissingExtra, require

    try:
        for module in _CLUSTER_MODULES:
            require(module, "cluster", feature="the sessionshare command")
    except MissingExtra as exc:
        sys.exit(f"sessionshare: {exc}")
    from sessionshare.cli.main import main as run

    run()
