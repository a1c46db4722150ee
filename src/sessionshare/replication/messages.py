"""Store operations and their answers as they travel between members (msgpack-able).

Kept apart from ``frames.py`` (which signs and frames any body) so that each side
of the wire format can be read, and tested, on its own.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from sessionshare.core.operations import Add, Delete, Get, Record, Stored, Touch, Write
from sessionshare.errors import StoreError, StoreUnavailable

__all__ = ["Op", "as_version", "decode_op", "decode_result", "encode_op", "encode_result"]

Op = Get | Write | Add | Delete | Touch


def encode_op(op: Op) -> list[Any]:
    if isinstance(op, Get):
        return ["g", op.key, op.touch]
    if isinstance(op, Write):
        version = None if op.version is None else list(op.version)  # type: ignore[call-overload]
        return ["w", op.key, op.value, op.ttl, version]
    if isinstance(op, Add):
        return ["a", op.key, op.value, op.ttl]
    if isinstance(op, Delete):
        return ["d", op.key]
    return ["t", op.key, op.ttl]


def decode_op(wire: Sequence[Any]) -> Op:
    code, key = wire[0], str(wire[1])
    if code == "g":
        return Get(key=key, touch=None if wire[2] is None else float(wire[2]))
    if code == "w":
        version = None if wire[4] is None else (int(wire[4][0]), int(wire[4][1]))
        return Write(key=key, value=bytes(wire[2]), ttl=float(wire[3]), version=version)
    if code == "a":
        return Add(key=key, value=bytes(wire[2]), ttl=float(wire[3]))
    if code == "d":
        return Delete(key=key)
    if code == "t":
        return Touch(key=key, ttl=float(wire[2]))
    raise ValueError(f"unknown operation {code!r}")


def encode_result(result: Any) -> Any:
    if isinstance(result, Record):
        return ["r", result.value, *result.version]  # type: ignore[misc]
    if isinstance(result, Stored):
        return ["s", *result.version]  # type: ignore[misc]
    if isinstance(result, StoreError):
        return ["e", str(result)]
    return result


def decode_result(wire: Any) -> Any:
    if isinstance(wire, list):
        if wire[0] == "r":
            return Record(bytes(wire[1]), (int(wire[2]), int(wire[3])))
        if wire[0] == "s":
            return Stored((int(wire[1]), int(wire[2])))
        return StoreUnavailable(str(wire[1]))
    return wire


def as_version(version: Hashable | None) -> tuple[int, int] | None:
    """A version as the table compares it (msgpack turns tuples into lists)."""
    if version is None:
        return None
    pair: Sequence[Any] = version  # type: ignore[assignment]
    return (int(pair[0]), int(pair[1]))
