"""memcached's meta protocol (``mg``/``ms``/``md``/``mn``, memcached >= 1.6), without I/O.

Why meta commands rather than pymemcache's classic ``get``/``gets``/``cas``: the session
protocol needs, per request, *one* round trip that takes a lock and reads the session
(in that order, on one connection), and one that writes by version and releases the lock.
pymemcache 4.0 (its latest release) sends one command per call and has no ``gat``/``gats``
(added upstream in pymemcache PR #468, unreleased), so a locked request would cost four
sequential round trips and a read-only one two. Meta commands can be pipelined freely on
one connection, each carries exactly the options it needs (``mg key v c T1800`` reads the
value and cas token and refreshes the TTL at once: the old ``gats``), and every reply is
self-delimiting, so one parser serves the sync and the async store (the h11 design).

Reference: memcached ``doc/protocol.txt`` ("Meta Debug/Get/Set/Delete/No-Op") and the wiki
page MetaCommands.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "NOOP",
    "ProtocolError",
    "Reply",
    "ReplyParser",
    "expiry",
    "meta_delete",
    "meta_get",
    "meta_set",
]

#: memcached reads a TTL above 30 days as an absolute unix time (protocol.txt, "Expiration
#: times"); longer TTLs are therefore sent as ``now + ttl``.
MAX_RELATIVE_TTL = 30 * 86400
#: memcached refuses keys longer than 250 bytes or containing whitespace/control characters.
_KEY_RE = re.compile(rb"[\x21-\x7e]{1,250}")

NOOP = b"mn\r\n"


class ProtocolError(Exception):
    """The server sent something that is not a meta reply (connection must be dropped)."""


def expiry(ttl: float, now: float) -> int:
    """A memcached exptime that keeps an item for at least ``ttl`` seconds.

    memcached's clock ticks once per second, so an exptime of N seconds lasts anywhere
    between N - 1 and N: a 1 s lock lease could vanish at once. So ``ttl`` is rounded
    *up* and one second added; never 0, which memcached reads as "never expires". Over
    30 days the value is an absolute unix time.
    """
    seconds = math.ceil(ttl) + 1
    if seconds > MAX_RELATIVE_TTL:
        return int(now) + seconds
    return seconds


def _key(key: str) -> bytes:
    raw = key.encode()
    if _KEY_RE.fullmatch(raw) is None:
        raise ValueError(f"not a valid memcached key: {key!r}")
    return raw


def meta_get(
    key: str,
    *,
    value: bool = True,
    cas: bool = True,
    ttl_left: bool = False,
    touch: int | None = None,
) -> bytes:
    """``mg``: read (``v``), return the cas token (``c``) and/or remaining TTL (``t``),
    refresh the TTL (``T``). Without ``v`` a hit answers ``HD`` (an existence check)."""
    flags = []
    if value:
        flags.append(b"v")
    if cas:
        flags.append(b"c")
    if ttl_left:
        flags.append(b"t")
    if touch is not None:
        flags.append(b"T%d" % touch)
    return b"mg " + _key(key) + b"".join(b" " + f for f in flags) + b"\r\n"


def meta_set(
    key: str, data: bytes, *, ttl: int, add: bool = False, cas: int | None = None
) -> bytes:
    """``ms``: store ``data``; ``add`` only if absent (mode ``E``), ``cas`` only if the
    item's cas token still equals it. The reply carries the new cas token (``c``)."""
    flags = b" T%d c" % ttl
    if add:
        flags += b" ME"
    if cas is not None:
        flags += b" C%d" % cas
    return b"ms " + _key(key) + b" %d" % len(data) + flags + b"\r\n" + data + b"\r\n"


def meta_delete(key: str) -> bytes:
    """``md``: delete; answers ``HD`` (deleted) or ``NF`` (was not there)."""
    return b"md " + _key(key) + b"\r\n"


@dataclass(frozen=True, slots=True)
class Reply:
    """One meta reply: a two-letter code, its return flags, and the value of a ``VA``.

    Codes: ``VA`` value follows, ``HD`` success, ``EN`` miss (get), ``NF`` not found,
    ``NS`` not stored (add found the key), ``EX`` cas mismatch, ``MN`` no-op; ``ERROR``
    for ``ERROR``/``CLIENT_ERROR``/``SERVER_ERROR`` lines (``message`` says which).
    """

    code: bytes
    flags: tuple[bytes, ...] = ()
    value: bytes | None = None
    message: str = ""

    @property
    def hit(self) -> bool:
        return self.code in (b"VA", b"HD")

    def _flag(self, letter: bytes) -> int | None:
        for flag in self.flags:
            if flag[:1] == letter:
                return int(flag[1:])
        return None

    @property
    def cas(self) -> int | None:
        return self._flag(b"c")

    @property
    def ttl_left(self) -> int | None:
        """Seconds left (``-1``: never expires), when asked for with ``ttl_left``."""
        return self._flag(b"t")


class ReplyParser:
    """Incremental parser: ``feed`` bytes as they arrive, take replies with ``next_reply``."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_reply(self) -> Reply | None:
        """The next complete reply, or ``None`` if more bytes are needed."""
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > 8192:  # no reply header is this long
                raise ProtocolError("reply line too long")
            return None
        line = bytes(self._buffer[:end])
        parts = line.split(b" ")
        code = parts[0]
        if code == b"VA":
            try:
                size = int(parts[1])
            except (IndexError, ValueError):
                raise ProtocolError(f"bad VA line {line[:60]!r}") from None
            start = end + 2
            if len(self._buffer) < start + size + 2:
                return None
            value = bytes(self._buffer[start : start + size])
            if self._buffer[start + size : start + size + 2] != b"\r\n":
                raise ProtocolError("value not followed by CRLF")
            del self._buffer[: start + size + 2]
            return Reply(code, tuple(parts[2:]), value)
        del self._buffer[: end + 2]
        if code in (b"HD", b"EN", b"NF", b"NS", b"EX", b"MN"):
            return Reply(code, tuple(parts[1:]))
        if code in (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR"):
            return Reply(b"ERROR", message=line.decode("latin-1"))
        raise ProtocolError(f"unexpected reply {line[:60]!r}")
