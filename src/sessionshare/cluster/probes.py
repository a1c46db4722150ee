"""Tiny asyncio clients for health probes and stats: HTTP GET, memcached, redis.

Hand-written on purpose: each is one request and one reply on the loopback, every call is
bounded by a timeout, and the supervisor must not depend on a test-only library (httpx)
or block its event loop (pymemcache, redis-py are blocking here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

__all__ = ["exchange", "get_json", "http_ok", "memcached_stats", "redis_stats"]


async def exchange(
    host: str, port: int, request: bytes, complete: Callable[[bytes], bool], timeout: float = 1.0
) -> bytes | None:
    """Send ``request``, read until ``complete(reply)`` or EOF; ``None`` on any failure."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await writer.drain()
            reply = b""
            while not complete(reply):
                data = await reader.read(65536)
                if not data:
                    break
                reply += data
            return reply
    except (OSError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _http_get(host: str, port: int, path: str, timeout: float) -> tuple[int, bytes] | None:
    request = f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode()
    reply = await exchange(host, port, request, lambda data: False, timeout)  # read to EOF
    if not reply:
        return None
    head, _, body = reply.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return None


async def http_ok(host: str, port: int, path: str = "/healthz", timeout: float = 1.0) -> bool:
    """True when ``GET path`` answers 2xx (a node's ``/healthz``)."""
    result = await _http_get(host, port, path, timeout)
    return result is not None and 200 <= result[0] < 300


async def get_json(host: str, port: int, path: str, timeout: float = 1.0) -> Any:
    """The JSON body of ``GET path`` when it answers 200, else ``None``."""
    result = await _http_get(host, port, path, timeout)
    if result is None or result[0] != 200:
        return None
    try:
        return json.loads(result[1])
    except ValueError:
        return None


async def memcached_stats(host: str, port: int, timeout: float = 1.0) -> dict[str, str] | None:
    """memcached's ``stats`` (``curr_items``, ``get_hits``…), or ``None`` when down."""
    reply = await exchange(host, port, b"stats\r\n", lambda d: d.endswith(b"END\r\n"), timeout)
    if reply is None or not reply.endswith(b"END\r\n"):
        return None
    stats: dict[str, str] = {}
    for line in reply.decode(errors="replace").splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            stats[parts[1]] = parts[2]
    return stats


def _bulk_complete(data: bytes) -> bool:
    """A RESP bulk string (``$<len>\\r\\n<body>\\r\\n``) has fully arrived."""
    head, sep, body = data.partition(b"\r\n")
    if not sep:
        return False
    if not head.startswith(b"$"):
        return True  # an error or another reply type: nothing more will come
    try:
        return len(body) >= int(head[1:]) + 2
    except ValueError:
        return True


async def redis_stats(host: str, port: int, timeout: float = 1.0) -> dict[str, str] | None:
    """redis ``INFO`` as a flat dict (``keyspace_hits``, ``db0``…), or ``None`` when down."""
    reply = await exchange(host, port, b"INFO\r\n", _bulk_complete, timeout)
    if reply is None or not reply.startswith(b"$"):
        return None
    info: dict[str, str] = {}
    for line in reply.partition(b"\r\n")[2].decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            info[key] = value
    return info
