"""Session ids: generation and strict parsing (SPEC §2)."""

from __future__ import annotations

import pytest

from sessionshare.core.ids import MAX_ID_LENGTH, SessionId, parse_session_id, route_of


def test_new_ids_have_128_random_bits_and_differ() -> None:
    ids = {SessionId.new().token for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(token) == 32 and int(token, 16) >= 0 for token in ids)


@pytest.mark.parametrize(
    ("node", "route", "text_suffix"),
    [
        (None, None, ""),
        ("n1", None, "-n1"),
        (None, "node2", ".node2"),
        ("n1", "node2", "-n1.node2"),
    ],
)
def test_round_trip_with_suffixes(node: str | None, route: str | None, text_suffix: str) -> None:
    sid = SessionId.new(node, route)
    assert str(sid) == sid.token + text_suffix
    assert parse_session_id(str(sid)) == sid


def test_relocation_keeps_the_token() -> None:
    sid = SessionId.new("n1", "node1")
    moved = sid.with_node("n2").with_route("node2")
    assert moved.token == sid.token
    assert str(moved).endswith("-n2.node2")
    assert route_of(str(moved)) == "node2"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "0" * 31,  # too short
        "0" * 33,  # too long for a token, no separator
        "G" * 32,  # not hex
        "A" * 32,  # upper-case hex is not what we issue
        "0" * 32 + "-",  # empty node
        "0" * 32 + ".",  # empty route
        "0" * 32 + "-n1-n2",  # two node parts
        "0" * 32 + ".r1.r2",
        "0" * 32 + ".r1-n1",  # parts in the wrong order
        "0" * 32 + "-n/1",  # wrong charset
        "0" * 32 + "-" + "n" * 33,  # node name too long
        "0" * 32 + " ",
        "0" * 32 + "\x00",
        "0" * 32 + "-n1." + "r" * (MAX_ID_LENGTH),  # oversized
        "é" * 32,
    ],
)
def test_malformed_ids_are_rejected(value: str) -> None:
    assert parse_session_id(value) is None
    assert route_of(value) is None
