"""Static membership, failure detection and placement as pure state changes."""

from __future__ import annotations

import collections

import pytest

from sessionshare.errors import ConfigError
from sessionshare.replication.membership import (
    MemberAddress,
    Membership,
    Status,
    own_slots,
    parse_members,
)
from sessionshare.replication.placement import rank, token_of


def test_members_parse_from_a_string_or_a_list_and_default_to_loopback() -> None:
    expected = [MemberAddress("node1", "127.0.0.1", 4001), MemberAddress("node2", "10.0.0.2", 4002)]
    assert parse_members("node1=4001, node2=10.0.0.2:4002") == expected
    assert parse_members(["node1=127.0.0.1:4001", "node2=10.0.0.2:4002"]) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("node1", "expected NAME=HOST:PORT"),
        ("node1=4001 node1=4002", "duplicate"),
        ("no-dash=4001", "not a valid name"),
        ("node1=70000", "out of range"),
        ("", "empty"),
    ],
)
def test_bad_member_lists_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_members(spec)


def test_a_node_with_several_workers_claims_its_slots_in_order() -> None:
    members = parse_members("node1=4001 node2=4002 node1_2=4003 node10=4004")
    assert [m.name for m in own_slots(members, "node1")] == ["node1", "node1_2"]
    with pytest.raises(ConfigError, match="not in members"):
        own_slots(members, "node3")


def view() -> Membership:
    return Membership(parse_members("b=4002 c=4003"), drop_after=3.0)


def test_members_become_ready_and_silent_ones_become_suspects() -> None:
    members = view()
    assert members.announce("b", Status.READY, 11, 1, now=0.0)
    assert not members.announce("b", Status.READY, 11, 1, now=0.5)  # no change
    assert members.with_status(Status.READY) == ["b"]
    assert members.silent(now=3.0) == []
    assert members.silent(now=3.6) == ["b"]  # c was never up: not a suspect


def test_a_dropped_epoch_is_never_trusted_again_but_a_resync_is() -> None:
    members = view()
    members.announce("b", Status.READY, 11, 1, now=0.0)
    assert members.drop("b")
    assert not members.announce("b", Status.READY, 11, 1, now=1.0)  # late heartbeat
    assert members.with_status(Status.READY) == []
    assert members.gossip() == [["b", 11, 1]]
    assert members.announce("b", Status.SYNCING, 11, 2, now=2.0)  # it re-syncs
    assert members.gossip() == []


def test_gossiped_drops_apply_to_others_and_tell_a_member_it_was_dropped() -> None:
    members = view()
    members.announce("b", Status.READY, 11, 1, now=0.0)
    members.announce("c", Status.READY, 12, 4, now=0.0)
    assert not members.adopt([["c", 12, 3]], "a", (10, 1))  # an old epoch of c: ignored
    assert members.with_status(Status.READY) == ["b", "c"]
    assert members.adopt([["b", 11, 1], ["a", 10, 1]], "a", (10, 1))
    assert members.with_status(Status.READY) == ["c"]
    assert not members.adopt([["a", 10, 1]], "a", (10, 2))  # already re-synced


def test_rendezvous_placement_is_stable_and_moves_little() -> None:
    names = ["node1", "node2", "node3"]
    tokens = [f"{i:032x}" for i in range(3000)]
    owners = {t: rank(t, names)[0] for t in tokens}
    assert rank(tokens[0], names) == rank(tokens[0], list(reversed(names)))
    spread = collections.Counter(owners.values())
    assert min(spread.values()) > 800  # about a third each
    after = {t: rank(t, ["node1", "node2"])[0] for t in tokens}
    moved = [t for t in tokens if owners[t] != after[t]]
    # Only node3's sessions move, each to the member that was second in line (its backup).
    assert all(owners[t] == "node3" and after[t] == rank(t, names)[1] for t in moved)
    assert token_of("app:lock:abc") == token_of("app:s:abc") == "abc"
