"""Session manager options (SPEC §3): one dataclass, three sources.

Every option has a keyword argument, a key in the cluster file's ``[session]`` table
and an environment variable ``SESSIONSHARE_<NAME>``. Precedence, lowest first:
defaults < cluster file < environment < keyword arguments, the order a user of
nginx or gunicorn expects (the command line wins over the environment, which wins
over the file).

Values are validated once, at start-up, and a bad one raises ``ConfigError`` naming
the option, so a typo never surfaces as a 500 at request time.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sessionshare.errors import ConfigError

__all__ = ["DEFAULT_IGNORE", "SessionConfig", "parse_duration", "parse_size"]

#: MSM's requestUriIgnorePattern default, widened to today's static assets.
DEFAULT_IGNORE = r".*\.(ico|png|gif|jpg|jpeg|svg|css|js|woff|woff2|map)$"

STORE_KINDS = ("memory", "memcached", "redis", "replicated", "backup")
LOCKING_MODES = ("none", "all", "auto")
SAMESITE_VALUES = ("Lax", "Strict", "None")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2,
    "GB": 1000**3, "GiB": 1024**3,
}  # fmt: skip
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_duration(value: str | float | int, name: str = "duration") -> float:
    """Seconds from ``5s``, ``100ms``, ``30m``, ``1h``, ``2d`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a duration such as '5s' or '100ms', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(value)
        if match is None:
            raise ConfigError(f"{name}: expected a duration such as '5s' or '100ms', got {value!r}")
        seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    if seconds < 0:
        raise ConfigError(f"{name}: must not be negative, got {value!r}")
    return seconds


def parse_size(value: str | int, name: str = "size") -> int:
    """Bytes from ``1MiB``, ``512KiB``, ``1000`` …"""
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a size such as '1MiB', got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.match(value)
        if match is None:
            raise ConfigError(f"{name}: expected a size such as '1MiB' or '4096', got {value!r}")
        size = int(match[1]) * _SIZE_UNITS[match[2]]
    if size <= 0:
        raise ConfigError(f"{name}: must be positive, got {value!r}")
    return size


def _parse_bool(value: str | bool, name: str) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _compile(pattern: str, name: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{name}: not a valid regular expression ({exc}): {pattern!r}") from None


# Options whose values need converting from strings (env vars, CLI) to their type.
_DURATIONS = {"lock_timeout", "backup_timeout", "operation_timeout", "max_inactive", "join_timeout"}
_SIZES = {"max_session_bytes"}
_BOOLS = {
    "sticky", "backup_async", "cookie_httponly", "replication_async", "cookie_persistent",
    "cookie_partitioned",
}  # fmt: skip
_INTS = {"max_sessions"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """All session manager options with SPEC §3's defaults (MSM names in the docs)."""

    store: str = "memory"
    nodes: str | None = None
    failover_nodes: str | None = None
    sticky: bool = False
    locking: str = "auto"
    lock_timeout: float = 5.0
    ignore: str | None = DEFAULT_IGNORE
    backup_async: bool = True
    backup_timeout: float = 0.1
    operation_timeout: float = 1.0
    key_prefix: str = "sessionshare"
    attribute_filter: str | None = None
    serializer: str = "json"
    secret: str | None = field(default=None, repr=False)
    max_inactive: float = 1800.0
    max_session_bytes: int = 1024 * 1024
    #: process-local stores (memory, replicated) keep at most this many sessions (LRU).
    max_sessions: int = 100_000
    route: str | None = None
    #: replicated/backup: every member, ``"node1=127.0.0.1:4001 node2=127.0.0.1:4002"``
    #: (a TOML list is accepted too); ``member_name`` says which one this is (default: route).
    members: str | None = None
    member_name: str | None = None
    #: replicated/backup: answer before the other members acknowledged a write (risk: docs).
    replication_async: bool = False
    #: replicated/backup: longest wait for the state transfer at start (Tomcat: 60 s).
    join_timeout: float = 10.0
    cookie_name: str = "SESSIONID"
    cookie_path: str = "/"
    cookie_domain: str | None = None
    #: ``None`` means "auto": Secure when the request came over https.
    cookie_secure: bool | None = None
    cookie_httponly: bool = True
    cookie_samesite: str = "Lax"
    #: ``true``: the cookie carries Max-Age = ``max_inactive`` and is re-sent on every
    #: response, so it survives a browser restart (Starlette's ``max_age``); ``false``: a
    #: browser-session cookie, as Tomcat's.
    cookie_persistent: bool = False
    #: add the ``Partitioned`` attribute (CHIPS: a third-party cookie kept per top-level
    #: site; browsers want it with Secure), as Starlette's ``partitioned=True``.
    cookie_partitioned: bool = False

    def __post_init__(self) -> None:
        self._validate()

    # -- construction from the three sources --------------------------------------

    @classmethod
    def load(
        cls,
        file_options: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> SessionConfig:
        """Merge defaults < ``file_options`` < ``SESSIONSHARE_*`` env vars < ``overrides``."""
        names = {f.name for f in fields(cls)}
        merged: dict[str, Any] = {}
        for source, label in ((file_options or {}, "cluster file"), (overrides, "argument")):
            unknown = sorted(set(source) - names)
            if unknown:
                raise ConfigError(f"unknown session option(s) in {label}: {', '.join(unknown)}")
        merged.update(file_options or {})
        env = os.environ if environ is None else environ
        for name in names:
            value = env.get(f"SESSIONSHARE_{name.upper()}")
            if value is not None:
                merged[name] = value
        merged.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{name: cls._convert(name, value) for name, value in merged.items()})

    def replace(self, **changes: Any) -> SessionConfig:
        """A copy with some options changed (validated again)."""
        converted = {name: self._convert(name, value) for name, value in changes.items()}
        return dataclasses.replace(self, **converted)

    @staticmethod
    def _convert(name: str, value: Any) -> Any:
        if value is None:
            return None
        if name == "members" and isinstance(value, list | tuple):
            return " ".join(str(item) for item in value)
        if name in _DURATIONS:
            return parse_duration(value, name)
        if name in _SIZES:
            return parse_size(value, name)
        if name in _BOOLS:
            return _parse_bool(value, name)
        if name == "cookie_secure":
            if isinstance(value, str) and value.strip().lower() == "auto":
                return None
            return _parse_bool(value, name)
        if name in _INTS:
            try:
                return int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{name}: expected a whole number, got {value!r}") from None
        return value

    # -- validation -----------------------------------------------------------------

    def _validate(self) -> None:
        if self.store not in STORE_KINDS:
            kinds = ", ".join(STORE_KINDS)
            raise ConfigError(f"store: expected one of {kinds}, got {self.store!r}")
        if not (self.locking in LOCKING_MODES or self.locking.startswith("uri:")):
            raise ConfigError(
                f"locking: expected none, all, auto or uri:<regex>, got {self.locking!r}"
            )
        if self.locking.startswith("uri:"):
            _compile(self.locking[4:], "locking")
        for name in ("ignore", "attribute_filter"):
            pattern = getattr(self, name)
            if pattern is not None:
                _compile(pattern, name)
        if self.serializer == "pickle" and not self.secret:
            raise ConfigError(
                "serializer: 'pickle' needs a 'secret' (pickled payloads are HMAC-signed and "
                "verified before unpickling; unsigned pickle would let a store writer run code)"
            )
        if self.failover_nodes and not self.sticky:
            raise ConfigError(
                "failover_nodes: only allowed with sticky = true (as in memcached-session-"
                "manager: in non-sticky mode every node is read on every request, so there "
                "is nothing to fail over to)"
            )
        if self.cookie_samesite not in SAMESITE_VALUES:
            raise ConfigError(
                f"cookie_samesite: expected Lax, Strict or None, got {self.cookie_samesite!r}"
            )
        if self.cookie_samesite == "None" and self.cookie_secure is False:
            raise ConfigError("cookie_samesite: 'None' needs cookie_secure (browsers drop it)")
        if not self.cookie_name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.cookie_name):
            raise ConfigError(f"cookie_name: not a valid cookie name: {self.cookie_name!r}")
        if self.max_inactive <= 0:
            raise ConfigError("max_inactive: must be positive")
        if self.lock_timeout <= 0 or self.operation_timeout <= 0:
            raise ConfigError("lock_timeout and operation_timeout must be positive")
        if self.max_sessions <= 0:
            raise ConfigError("max_sessions: must be positive")
        if not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,64}", self.key_prefix):
            raise ConfigError(
                f"key_prefix: use 1-64 of A-Z a-z 0-9 _ . : -, got {self.key_prefix!r}"
            )
        if self.route is not None and not re.fullmatch(r"[A-Za-z0-9_]{1,32}", self.route):
            raise ConfigError(f"route: use 1-32 of A-Z a-z 0-9 _, got {self.route!r}")
