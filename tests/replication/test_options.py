"""The peer stores' options: three sources, and start-up errors that name what is wrong."""

from __future__ import annotations

import pytest

from sessionshare.config import SessionConfig
from sessionshare.errors import ConfigError
from sessionshare.replication import AsyncBackupStore, BackupStore
from sessionshare.stores.factory import create_async_store, create_store

MEMBERS = ["node1=127.0.0.1:4001", "node2=127.0.0.1:4002"]


def test_options_come_from_the_file_the_environment_and_arguments() -> None:
    config = SessionConfig.load(
        {"store": "backup", "members": MEMBERS, "join_timeout": "30s"},
        environ={"SESSIONSHARE_REPLICATION_ASYNC": "true", "SESSIONSHARE_SECRET": "s"},
        member_name="node2",
    )
    assert config.members == "node1=127.0.0.1:4001 node2=127.0.0.1:4002"
    assert (config.join_timeout, config.replication_async, config.member_name) == (
        30.0,
        True,
        "node2",
    )
    store = create_store(config)
    assert isinstance(store, BackupStore) and store.node.copies == 2
    assert store.node.name == "node2" and not store.node.sync_acks
    assert isinstance(create_async_store(config), AsyncBackupStore)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"secret": "s", "route": "node1"}, "needs 'members'"),
        ({"members": " ".join(MEMBERS), "route": "node1"}, "needs a 'secret'"),
        ({"members": " ".join(MEMBERS), "secret": "s"}, "needs 'member_name'"),
        ({"members": " ".join(MEMBERS), "secret": "s", "route": "node3"}, "not in members"),
        ({"members": "node1:4001", "secret": "s", "route": "node1"}, "NAME=HOST:PORT"),
    ],
)
def test_a_peer_store_refuses_to_start_without_what_it_needs(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        create_store(SessionConfig.load(environ={}, store="replicated", **options))
