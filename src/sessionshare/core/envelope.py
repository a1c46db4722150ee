"""The stored form of a session: a small metadata header, then the attributes.

    b"SS1 " + JSON header + b"\\n" + serializer.dumps(attributes)

Keeping the attributes' bytes separate from the header is what makes change
detection cheap: the attribute bytes read from the store *are* the "before"
snapshot, so a request costs one ``loads`` and one ``dumps``, and "modified?" is a
bytes comparison that sees nested mutation too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sessionshare.core.serializers import Serializer
from sessionshare.errors import SerializationError

__all__ = ["Envelope", "decode_attributes", "decode_envelope", "encode_envelope"]

_MAGIC = b"SS1 "


@dataclass(frozen=True, slots=True)
class Envelope:
    created_at: float  # wall-clock seconds (time.time), shown to users
    max_inactive: float  # seconds
    written_at: float  # wall-clock seconds of the last write
    attributes: bytes  # serializer.dumps(dict of attributes)


def encode_envelope(envelope: Envelope) -> bytes:
    header = json.dumps(
        {"c": envelope.created_at, "m": envelope.max_inactive, "w": envelope.written_at},
        separators=(",", ":"),
    ).encode()
    return b"".join((_MAGIC, header, b"\n", envelope.attributes))


def decode_envelope(blob: bytes) -> Envelope:
    """Split stored bytes; ``SerializationError`` for anything that is not ours."""
    if not blob.startswith(_MAGIC):
        raise SerializationError("stored bytes do not start with the sessionshare marker")
    header, sep, attributes = blob[len(_MAGIC) :].partition(b"\n")
    if not sep:
        raise SerializationError("stored session has no header terminator")
    try:
        meta = json.loads(header)
        return Envelope(float(meta["c"]), float(meta["m"]), float(meta["w"]), attributes)
    except (ValueError, KeyError, TypeError) as exc:
        raise SerializationError(f"stored session header is invalid: {exc}") from None


def decode_attributes(serializer: Serializer, data: bytes) -> dict[str, Any]:
    """The attribute dict, checked to be a dict with string keys."""
    attributes = serializer.loads(data)
    if not isinstance(attributes, dict) or not all(isinstance(k, str) for k in attributes):
        raise SerializationError("stored session attributes are not a string-keyed mapping")
    return attributes
