"""HTTP/1.1 message plumbing shared by the client and the node side of the proxy.

Parsing is httptools (llhttp, the parser of Node.js), chosen by measurement over h11
(docs/balancer.md). httptools reports a message through callbacks; ``MessageEvents``
turns them into a queue of events (``Head``, body ``bytes``, ``END``), so the proxy reads
a message the way httpcore reads h11 events, one ``await`` per network read.
What httptools does not do, and so is written here: header-size accounting (llhttp has
no limit of its own), hop-by-hop filtering (RFC 9110 §7.6.1) and re-framing a body as
chunked when the two sides cannot share a Content-Length.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

import httptools

__all__ = [
    "END",
    "HOP_BY_HOP",
    "End",
    "Head",
    "MessageEvents",
    "chunk",
    "connection_tokens",
    "error_response",
]

#: RFC 9110 §7.6.1 plus the de-facto ``Keep-Alive`` / ``Proxy-Connection``: meaningful for
#: one hop only, never forwarded. ``Expect`` is answered by the balancer itself.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)


class End:
    def __repr__(self) -> str:
        return "END"


#: The event after the last body byte of a message.
END: Final = End()


@dataclass(slots=True)
class Head:
    """A parsed request or response head, captured when httptools finished it."""

    method: bytes  # b"" for responses
    target: bytes  # request target; reason phrase for responses
    status: int  # 0 for requests
    version: str  # "1.1" / "1.0"
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    size: int  # bytes of start line + headers, for the 431 limit
    content_length: int | None
    chunked: bool
    #: Header names (lowercase) that are hop-by-hop for this message: the fixed set plus
    #: any listed in its ``Connection`` header (RFC 9110 §7.6.1).
    hop_by_hop: frozenset[bytes]

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """Header names listed in a ``Connection:`` value are hop-by-hop too (RFC 9110 §7.6.1)."""
    return frozenset(t.strip().lower() for t in value.split(b","))


class MessageEvents:
    """httptools callbacks → a deque of ``Head`` / ``bytes`` / ``END``.

    Everything about a head (method, version, keep-alive) is read *inside*
    ``on_headers_complete``: with pipelining one ``feed`` may already hold the next
    message, and the parser's getters would then describe that one.
    """

    __slots__ = ("_headers", "_size", "_target", "events", "parser", "queued")

    def __init__(self, response: bool = False) -> None:
        self.events: deque[Head | bytes | End] = deque()
        self.queued = 0  # body bytes in ``events``, for read back-pressure
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._size = 0
        self.parser: httptools.HttpRequestParser | httptools.HttpResponseParser = (
            httptools.HttpResponseParser(self) if response else httptools.HttpRequestParser(self)
        )

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raises ``httptools.HttpParserError`` on a malformed message."""
        self.parser.feed_data(data)

    # -- httptools callbacks -------------------------------------------------------
    def on_message_begin(self) -> None:
        self._target = b""
        self._headers = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._target += url
        self._size += len(url)

    def on_status(self, status: bytes) -> None:
        self._target += status
        self._size += len(status)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        parser = self.parser
        content_length: int | None = None
        chunked = False
        hop_by_hop = HOP_BY_HOP
        for key, value in self._headers:
            lower = key.lower()
            if lower == b"content-length":
                content_length = int(value)  # llhttp already rejected non-digits
            elif lower == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lower == b"connection":
                hop_by_hop = hop_by_hop | connection_tokens(value)
        if isinstance(parser, httptools.HttpRequestParser):
            method, status = parser.get_method(), 0
        else:
            method, status = b"", parser.get_status_code()
        self.events.append(
            Head(
                method,
                self._target,
                status,
                parser.get_http_version(),
                self._headers,
                parser.should_keep_alive(),
                self._size + 16,
                None if chunked else content_length,
                chunked,
                hop_by_hop,
            )
        )

    def on_body(self, body: bytes) -> None:
        self.events.append(body)
        self.queued += len(body)

    def on_message_complete(self) -> None:
        self.events.append(END)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


_REASONS: Final = {
    400: "Bad Request",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def error_response(status: int, detail: str, close: bool = True) -> bytes:
    """A short HTML error page, the kind nginx prints (SPEC §5: a *short* page)."""
    reason = _REASONS.get(status, "Error")
    body = (
        f"<!doctype html>\n<html><head><title>{status} {reason}</title></head>\n"
        f"<body><h1>{status} {reason}</h1>\n<p>{detail}</p>\n"
        "<hr><p>sessionshare balancer</p></body></html>\n"
    ).encode()
    connection = "close" if close else "keep-alive"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n"
        "Cache-Control: no-store\r\n\r\n"
    ).encode() + body
