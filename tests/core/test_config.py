"""Options: defaults, the three sources, and errors that name the bad part."""

from __future__ import annotations

import pytest

from sessionshare.config import SessionConfig, parse_duration, parse_size
from sessionshare.errors import ConfigError, NotYetAvailable
from sessionshare.stores.factory import create_store


def test_spec_defaults() -> None:
    config = SessionConfig()
    assert (config.store, config.sticky, config.locking) == ("memory", False, "auto")
    assert config.lock_timeout == 5.0 and config.operation_timeout == 1.0
    assert config.backup_timeout == pytest.approx(0.1)
    assert config.max_inactive == 1800.0 and config.max_session_bytes == 1024 * 1024
    assert (config.cookie_name, config.cookie_httponly, config.cookie_samesite) == (
        "SESSIONID",
        True,
        "Lax",
    )
    assert config.serializer == "json"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5), ("100ms", 0.1), ("30m", 1800), ("1h", 3600), ("2", 2), (1.5, 1.5)],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "size"), [("1MiB", 1048576), ("512KiB", 524288), ("1000", 1000)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_precedence_file_env_arguments() -> None:
    env = {"SESSIONSHARE_LOCK_TIMEOUT": "2s", "SESSIONSHARE_COOKIE_NAME": "ENV"}
    config = SessionConfig.load(
        {"lock_timeout": "9s", "cookie_name": "FILE", "locking": "all"},
        environ=env,
        cookie_name="ARG",
    )
    assert config.lock_timeout == 2.0  # env beats file
    assert config.cookie_name == "ARG"  # argument beats env
    assert config.locking == "all"  # file beats default


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"store": "mongo"}, "store"),
        ({"locking": "sometimes"}, "locking"),
        ({"locking": "uri:("}, "locking"),
        ({"lock_timeout": "soon"}, "lock_timeout"),
        ({"max_session_bytes": "big"}, "max_session_bytes"),
        ({"serializer": "pickle"}, "serializer"),
        ({"failover_nodes": "n3:127.0.0.1:11213"}, "failover_nodes"),
        ({"cookie_samesite": "lax"}, "cookie_samesite"),
        ({"sticky": "maybe"}, "sticky"),
        ({"ignore": "*.css"}, "ignore"),
        ({"route": "node-1"}, "route"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_options_fail_naming_the_option(options: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        SessionConfig.load(environ={}, **options)


def test_unbuilt_stores_say_not_yet() -> None:
    with pytest.raises(NotYetAvailable, match="not available yet"):
        create_store(SessionConfig(store="redis"))
