"""Store operations and answers survive the trip through msgpack unchanged."""

from __future__ import annotations

import msgpack
import pytest

from sessionshare.core.operations import Add, Delete, Get, Record, Stored, Touch, Write
from sessionshare.errors import StoreUnavailable
from sessionshare.replication.messages import (
    Op,
    as_version,
    decode_op,
    decode_result,
    encode_op,
    encode_result,
)


def trip(value: object) -> object:
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)


@pytest.mark.parametrize(
    "op",
    [
        Get(key="p:s:t", touch=1800.0),
        Get(key="p:s:t"),
        Write(key="p:s:t", value=b"\x00blob", ttl=60.0, version=(3, 2**61)),
        Write(key="p:s:t", value=b"new", ttl=60.0, version=None),
        Add(key="p:lock:t", value=b"owner", ttl=2.0),
        Delete(key="p:lock:t"),
        Touch(key="p:lock:t", ttl=2.0),
    ],
)
def test_operations_round_trip(op: Op) -> None:
    assert decode_op(trip(encode_op(op))) == op  # type: ignore[arg-type]


def test_answers_round_trip_and_errors_stay_errors() -> None:
    assert decode_result(trip(encode_result(Record(b"v", (4, 9))))) == Record(b"v", (4, 9))
    assert decode_result(trip(encode_result(Stored((5, 1))))) == Stored((5, 1))
    for plain in (True, False, None):
        assert decode_result(trip(encode_result(plain))) is plain
    error = decode_result(trip(encode_result(StoreUnavailable("member node1 is full"))))
    assert isinstance(error, StoreUnavailable) and "full" in str(error)
    assert as_version([7, 8]) == (7, 8) and as_version(None) is None


def test_an_unknown_operation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        decode_op(["x", "p:s:t"])
