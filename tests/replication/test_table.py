"""One member's table: versions comparable across members, tombstones, the bound, expiry."""

from __future__ import annotations

import pytest

from sessionshare.replication.table import TOMBSTONE_TTL, Table, TableFull


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_conditional_writes_and_versions_that_other_members_can_compare() -> None:
    owner, replica = Table(), Table()
    first = owner.write("k", b"v1", 60, None)
    assert first is not None and first.seq == 1
    assert owner.write("k", b"again", 60, None) is None  # add-if-absent
    assert owner.write("k", b"v2", 60, (1, first.nonce + 1)) is None  # wrong version
    second = owner.write("k", b"v2", 60, first.version)
    assert second is not None and second.seq == 2
    # Copies arrive out of order: the newer version wins wherever it is applied.
    assert replica.merge("k", b"v2", second.seq, second.nonce, 60)
    assert not replica.merge("k", b"v1", first.seq, first.nonce, 60)
    entry = replica.get("k")
    assert entry is not None and (entry.value, entry.version) == (b"v2", second.version)
    # ...so the replica can take over as owner and check the same version.
    assert replica.write("k", b"v3", 60, second.version) is not None


def test_a_deleted_key_is_not_resurrected_by_a_late_copy() -> None:
    owner, replica = Table(), Table()
    entry = owner.write("k", b"v1", 60, None)
    assert entry is not None
    tomb = owner.delete("k")
    assert tomb is not None and tomb.value is None
    assert replica.merge("k", None, tomb.seq, tomb.nonce, TOMBSTONE_TTL)
    assert not replica.merge("k", b"v1", entry.seq, entry.nonce, 60)
    assert replica.get("k") is None
    reborn = owner.write("k", b"v2", 60, None)  # absent again: a new session
    assert reborn is not None and reborn.seq == tomb.seq + 1


def test_the_bound_refuses_new_sessions_but_not_updates_or_copies() -> None:
    table = Table(max_entries=2)
    a = table.write("a", b"1", 60, None)
    table.write("b", b"1", 60, None)
    with pytest.raises(TableFull, match="2 sessions"):
        table.write("c", b"1", 60, None)
    assert table.rejected == 1
    assert a is not None and table.write("a", b"2", 60, a.version) is not None
    assert table.merge("d", b"copy", 1, 5, 60)  # the owner decided; a copy is kept


def test_expired_keys_are_never_served_and_are_reclaimed() -> None:
    clock = Clock()
    table = Table(clock=clock)
    for i in range(10):
        table.write(f"k{i}", b"v", 10 if i % 2 else 1000, None)
    table.get("k1", touch=30)  # read with a TTL refresh: lives on
    clock.now += 11
    assert table.get("k3") is None
    assert table.get("k1") is not None
    assert table.sweep() == 3  # k5, k7, k9 (k3 went when read)
    assert len(table) == 6 and table.expired == 4


def test_a_replicated_ttl_refresh_moves_the_expiry_forward_only() -> None:
    clock = Clock()
    table = Table(clock=clock)
    entry = table.write("k", b"v", 10, None)
    assert entry is not None
    assert table.merge("k", b"v", entry.seq, entry.nonce, 50)
    assert not table.merge("k", b"v", entry.seq, entry.nonce, 20)
    clock.now += 40
    assert table.get("k") is not None


def test_forget_removes_only_the_version_it_names() -> None:
    """Undoing a refused change (issue #18) must never remove a copy merged since."""
    table = Table()
    first = table.write("k", b"v1", 60, None)
    assert first is not None
    assert not table.forget("k", first.seq, first.nonce + 1)  # another version: kept
    assert table.forget("k", first.seq, first.nonce)
    assert table.get("k") is None and table.current("k") is None
    table.merge("k", b"v1", first.seq, first.nonce, 60)
    tomb = table.delete("k")
    assert tomb is not None and table.forget("k", tomb.seq, tomb.nonce)  # a tombstone too
    assert table.current("k") is None
    assert table.merge("k", b"v1", first.seq, first.nonce, 60)  # nothing blocks the old copy
