"""Optional dependencies: import them with an error that names the ``pip install`` to run.

The core library needs only msgpack; a framework, the cluster tooling and each store
client come with an extra (``pip install 'sessionshare[flask]'`` …). A user who imports
an integration without its extra gets one line that says what to install, not a bare
``ModuleNotFoundError`` from deep inside our package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtra", "require"]


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra."""


def require(module: str, extra: str, *, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise ``MissingExtra`` naming ``sessionshare[extra]``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the module is there but something it imports is not: not ours to hide
        what = feature or "this part of sessionshare"
        raise MissingExtra(
            f"{what} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'sessionshare[{extra}]'"
        ) from exc
