"""An owner's session locks: test-and-set, expiry, renewal, release, sweep."""

from __future__ import annotations

from sessionshare.replication.locks import OwnerLocks
from tests.replication.test_table import Clock


def test_a_lock_is_taken_once_until_released_or_expired() -> None:
    clock = Clock()
    locks = OwnerLocks(clock=clock)
    assert locks.add("l:a", b"first", 2)
    assert not locks.add("l:a", b"second", 2)  # held
    assert locks.add("l:b", b"other", 2)  # another session's lock is separate
    assert locks.release("l:a")
    assert not locks.release("l:a")  # not a held lock (any other key says the same)
    assert locks.add("l:a", b"second", 2)
    clock.now += 2  # its holder died: the lock expires and can be taken again
    assert locks.add("l:a", b"third", 2)


def test_renewal_keeps_a_lock_past_its_ttl_and_an_expired_one_is_not_renewed() -> None:
    clock = Clock()
    locks = OwnerLocks(clock=clock)
    assert locks.add("l:a", b"holder", 2)
    clock.now += 1.5
    assert locks.touch("l:a", 2)
    clock.now += 1.5  # 3 s after it was taken, 1.5 s after its renewal
    assert not locks.add("l:a", b"other", 2)
    clock.now += 1
    assert not locks.touch("l:a", 2)  # expired: gone, not brought back
    assert not locks.touch("l:missing", 2)
    assert locks.add("l:a", b"other", 2)


def test_sweep_forgets_only_expired_locks() -> None:
    clock = Clock()
    locks = OwnerLocks(clock=clock)
    locks.add("l:old", b"x", 1)
    locks.add("l:new", b"y", 5)
    clock.now += 2
    assert locks.sweep() == 1
    assert len(locks) == 1
    assert not locks.add("l:new", b"z", 5)
