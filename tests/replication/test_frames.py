"""The frame codec on its own: what passes and what is refused, with no sockets."""

from __future__ import annotations

import struct

import pytest

from sessionshare.replication.frames import (
    HEADER,
    PROTOCOL_VERSION,
    FrameDecoder,
    FrameError,
    Kind,
    derive_key,
    encode_frame,
)

KEY = derive_key("secret")
V = PROTOCOL_VERSION
NONCE = b"n" * 16  # the receiver's HELLO nonce


def hello(key: bytes = KEY, name: str = "node1") -> bytes:
    return encode_frame(key, b"", Kind.HELLO, 0, [name, b"h" * 16, 7])


def decoder() -> FrameDecoder:
    return FrameDecoder(KEY, NONCE, max_body=1024)


def test_frames_round_trip_in_order_even_byte_by_byte() -> None:
    data = hello() + encode_frame(KEY, NONCE, Kind.REQUEST, 1, [1, "ping", []])
    receiver = decoder()
    frames = []
    for byte in data:
        receiver.feed(bytes([byte]))
        while (frame := receiver.next_frame()) is not None:
            frames.append(frame)
    assert [(f.kind, f.counter, f.body) for f in frames] == [
        (Kind.HELLO, 0, ["node1", b"h" * 16, 7]),
        (Kind.REQUEST, 1, [1, "ping", []]),
    ]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (hello(derive_key("other secret")), "bad signature"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad magic"),
        (struct.pack("!2sBBIQ", b"SR", 9, 1, 10, 0) + b"x" * 42, "unknown protocol version"),
        (struct.pack("!2sBBIQ", b"SR", V, 1, 2**31, 0), "over the 1024-byte limit"),
        (struct.pack("!2sBBIQ", b"SR", V, 77, 1, 0) + b"x" * 33, "unknown frame kind"),
        (encode_frame(KEY, NONCE, Kind.NOTIFY, 0, ["hb", []]), "HELLO must be the first"),
    ],
)
def test_bad_frames_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    receiver = decoder()
    receiver.feed(data)
    with pytest.raises(FrameError, match=reason):
        receiver.next_frame()
    with pytest.raises(FrameError):  # and the connection is not trusted again
        receiver.next_frame()


def test_oversized_length_is_refused_before_the_body_arrives() -> None:
    receiver = decoder()
    receiver.feed(HEADER.pack(b"SR", V, Kind.REQUEST, 10**9, 1))  # header only
    with pytest.raises(FrameError, match="limit"):
        receiver.next_frame()


def test_a_frame_replayed_on_the_same_connection_is_refused() -> None:
    ping = encode_frame(KEY, NONCE, Kind.REQUEST, 1, [1, "ping", []])
    receiver = decoder()
    receiver.feed(hello() + ping)
    assert receiver.next_frame() is not None and receiver.next_frame() is not None
    receiver.feed(ping)
    with pytest.raises(FrameError, match="counter 1, expected 2"):
        receiver.next_frame()


def test_a_frame_recorded_on_another_connection_fails_the_signature() -> None:
    recorded = encode_frame(KEY, b"o" * 16, Kind.REQUEST, 1, [1, "exec", []])
    receiver = decoder()
    receiver.feed(hello() + recorded)
    receiver.next_frame()
    with pytest.raises(FrameError, match="bad signature"):
        receiver.next_frame()


def test_a_flipped_bit_in_the_body_fails_the_signature() -> None:
    frame = bytearray(encode_frame(KEY, b"", Kind.HELLO, 0, ["node1", b"h" * 16, 7]))
    frame[HEADER.size + 2] ^= 1
    receiver = decoder()
    receiver.feed(bytes(frame))
    with pytest.raises(FrameError, match="bad signature"):
        receiver.next_frame()


def test_the_frame_key_is_not_the_raw_secret() -> None:
    assert derive_key("secret") != b"secret" and len(derive_key("secret")) == 32
