"""Replication frames: length-prefixed, versioned, HMAC-signed, with no I/O.

Tomcat's cluster trusts its network: any host that can reach the receiver port can
inject sessions. Members here sign every frame with a key derived from the shared
``secret``, and a receiver checks, in this order, before it decodes anything::

    header (16 bytes): b"SR" | version u8 | kind u8 | body length u32 | counter u64
    body:              msgpack
    tag (32 bytes):    HMAC-SHA256(key, receiver nonce | header | body)

- The **length** is checked against ``max_body`` before any byte of the body is
  buffered, so a forged length cannot make a member allocate gigabytes.
- Each side opens a connection with a ``HELLO`` that carries a fresh random
  nonce; every later frame the *other* side sends is signed over that nonce, so a
  frame recorded on one connection fails the signature on any other (replay).
- The **counter** must go up by exactly one per frame on a connection: a frame
  replayed or reordered inside one connection is refused too.

Any failed check raises a ``FrameError`` naming the reason; the transport logs it,
closes that one connection, and the member keeps serving.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from typing import Any, NamedTuple

import msgpack

__all__ = [
    "HEADER",
    "MAX_BODY",
    "PROTOCOL_VERSION",
    "TAG_SIZE",
    "Frame",
    "FrameDecoder",
    "FrameEncoder",
    "FrameError",
    "Kind",
    "derive_key",
    "encode_frame",
]

MAGIC = b"SR"
#: 2: a REQUEST carries a batch of calls and its REPLY an answer per call (transport.py).
#: 3: answers may ride on a REQUEST, and on either link between two members.
PROTOCOL_VERSION = 3
HEADER = struct.Struct("!2sBBIQ")
TAG_SIZE = 32
#: a body larger than this is refused from its header alone: room for a session at
#: ``max_session_bytes`` (1 MiB by default) plus a state-transfer chunk around it.
MAX_BODY = 8 * 1024 * 1024


class Kind(enum.IntEnum):
    HELLO = 1  # [member name, nonce, incarnation, route]; signed with an empty receiver nonce
    #: [request id, [[method, args], ...], answers]: calls, and answers owed to the
    #: receiver (as in REPLY), which ride along when both are due (transport.py)
    REQUEST = 2
    #: [[[request id, ok, [[ok, result], ...]], ...]]: answers, each to one REQUEST
    #: (ok false: that whole request failed)
    REPLY = 3
    NOTIFY = 4  # [method, args]; no answer (heartbeats, asynchronous pushes)


#: byte -> kind without ``Kind(byte)``, which is two Python calls per frame.
_KINDS = {kind.value: kind for kind in Kind}


class FrameError(Exception):
    """A frame failed a check; ``reason`` is what the log says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Frame(NamedTuple):
    """One verified frame (a named tuple: one is made per frame received, and a frozen
    dataclass costs several times as much to build)."""

    kind: Kind
    counter: int
    body: Any


def derive_key(secret: str) -> bytes:
    """The frame key: the shared ``secret`` bound to this one purpose.

    The same ``secret`` also signs pickled sessions; deriving a separate key means
    a signature made for one use can never be accepted for the other.
    """
    return hmac.digest(secret.encode(), b"sessionshare replication frames v1", hashlib.sha256)


def _mac(key: bytes, receiver_nonce: bytes) -> hmac.HMAC:
    """HMAC-SHA256 keyed with ``key`` that has absorbed ``receiver_nonce`` already.

    Each frame's tag starts from a ``copy()`` of it: the key's inner and outer
    blocks and the nonce are hashed once per connection instead of once per frame,
    which halves what signing costs for the small frames replication sends.
    """
    return hmac.new(key, receiver_nonce, hashlib.sha256)


class FrameEncoder:
    """Signs frames for one receiver (its HELLO ``nonce``; ``b""`` for the HELLO)."""

    def __init__(self, key: bytes, receiver_nonce: bytes) -> None:
        self._mac = _mac(key, receiver_nonce)
        self._packer = msgpack.Packer(use_bin_type=True)

    def encode(self, kind: Kind, counter: int, body: Any) -> bytes:
        """The bytes of one signed frame."""
        payload = self._packer.pack(body)
        header = HEADER.pack(MAGIC, PROTOCOL_VERSION, kind, len(payload), counter)
        mac = self._mac.copy()
        mac.update(header)
        mac.update(payload)
        return b"".join((header, payload, mac.digest()))


def encode_frame(key: bytes, receiver_nonce: bytes, kind: Kind, counter: int, body: Any) -> bytes:
    """The bytes of one signed frame (a one-off ``FrameEncoder``)."""
    return FrameEncoder(key, receiver_nonce).encode(kind, counter, body)


class FrameDecoder:
    """Bytes in, verified frames out (``feed`` then ``next_frame`` until ``None``).

    ``nonce`` is this side's own HELLO nonce: every frame after the peer's HELLO must
    be signed over it. Counters are checked here too, so a caller only ever sees
    frames that are authentic, fresh and in order.
    """

    def __init__(self, key: bytes, nonce: bytes, *, max_body: int = MAX_BODY) -> None:
        self._macs = {True: _mac(key, b""), False: _mac(key, nonce)}  # HELLO or not
        self._max_body = max_body
        self._buffer = bytearray()
        self._expected = 0  # the peer's HELLO is frame 0
        self.failed: FrameError | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, ``None`` if more bytes are needed; ``FrameError``."""
        if self.failed is not None:
            raise self.failed
        try:
            return self._next()
        except FrameError as exc:
            self.failed = exc  # a connection that sent one bad frame is not trusted again
            self._buffer.clear()
            raise

    def _next(self) -> Frame | None:
        buffer = self._buffer
        if len(buffer) < HEADER.size:
            return None
        magic, version, kind, length, counter = HEADER.unpack_from(buffer)
        if magic != MAGIC:
            raise FrameError("not a sessionshare replication frame (bad magic)")
        if version != PROTOCOL_VERSION:
            raise FrameError(f"unknown protocol version {version}")
        if length > self._max_body:
            raise FrameError(f"frame length {length} over the {self._max_body}-byte limit")
        frame_kind = _KINDS.get(kind)
        if frame_kind is None:
            raise FrameError(f"unknown frame kind {kind}")
        signed = HEADER.size + length
        end = signed + TAG_SIZE
        if len(buffer) < end:
            return None
        mac = self._macs[frame_kind is Kind.HELLO].copy()
        with memoryview(buffer) as view:  # no copies of the frame until it is trusted
            mac.update(view[:signed])
            if not hmac.compare_digest(view[signed:end], mac.digest()):
                raise FrameError("bad signature (wrong secret, tampered or replayed frame)")
            if (frame_kind is Kind.HELLO) != (self._expected == 0):
                raise FrameError(
                    "HELLO must be the first frame of a connection, and only the first"
                )
            if counter != self._expected:
                raise FrameError(f"frame counter {counter}, expected {self._expected} (replay)")
            try:
                body = msgpack.unpackb(view[HEADER.size : signed], raw=False)
            except (
                ValueError,
                msgpack.ExtraData,
                msgpack.FormatError,
                msgpack.StackError,
            ) as exc:
                raise FrameError(f"undecodable body: {exc}") from None
        del buffer[:end]
        self._expected += 1
        return Frame(frame_kind, counter, body)
