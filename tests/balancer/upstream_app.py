"""A tiny app node for balancer tests: says who it is, sleeps, streams, echoes, fails on demand.

The demo node (``sessionshare node``) shows sessions; the balancer tests also need slow,
streaming, failing and counting endpoints, which a demo should not carry. Raw ASGI on
uvicorn (the same server the demo uses) keeps it small and fast.

    python -m tests.balancer.upstream_app --name n1 --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]
Query = dict[str, str]
Receive = Any
Send = Any

PIECE = 64 * 1024


class UpstreamApp:
    """Endpoints (all answers carry ``X-Node: <name>``):

    ``/name``: the name; ``/headers``: request headers and client as JSON;
    ``/sleep?s=``: answer after s seconds; ``/bytes?n=[&chunked=1]``: n bytes, streamed;
    ``/upload``: consume the body, answer its size and sha256; ``/echo``: the body back;
    ``/count``: requests seen per "METHOD /path"; ``/status?code=[&only=name]``: that
    status; ``/healthz``: 200, or 503 after ``/health?ok=0``; ``/delay?s=``: slow ``/name``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: Counter[str] = Counter()
        self.healthy = True
        self.delay = 0.0  # seconds added to /name, to make this node "slow"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        self.seen[f"{scope['method']} {path}"] += 1
        handler = getattr(self, "do_" + path.strip("/").replace("-", "_"), None)
        if handler is None:
            await self.respond(send, 404, b"not found\n")
            return
        await handler(scope, query, receive, send)

    async def respond(
        self, send: Any, status: int, body: bytes, content_type: bytes = b"text/plain"
    ) -> None:
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-node", self.name.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def respond_json(self, send: Any, document: Any) -> None:
        await self.respond(send, 200, json.dumps(document).encode(), b"application/json")

    async def do_name(self, scope: Scope, query: Query, receive: Receive, send: Send) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        await self.respond(send, 200, self.name.encode())

    async def do_delay(self, scope: Scope, query: Query, receive: Receive, send: Send) -> None:
        self.delay = float(query.get("s", "0"))
        await self.respond(send, 200, b"set")

    async def do_healthz(self, scope: Scope, query: Query, receive: Receive, send: Send) -> None:
        await self.respond(send, 200 if self.healthy else 503, b"ok" if self.healthy else b"no")

    async def do_health(self, scope: Scope, query: Query, receive: Receive, send: Send) -> None:
        self.healthy = query.get("ok", "1") == "1"
        await self.respond(send, 200, b"set")

    async def do_headers(self, scope: Scope, query: Query, receive: Receive, send: Send) -> None:
        headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        await self.respond_json(
            send,
            {
                "headers": headers,
                "client": scope["client"][0],
                "http_version": scope["http_version"],
            },
        )

    async def do_sleep(self, scope: Scope, query: Query, receive: Receive, send: Send) -> None:
        await asyncio.sleep(float(query.get("s", "1")))
        await self.respond(send, 200, self.name.encode())

    async def do_status(self, scope: Scope, query: Query, receive: Receive, send: Send) -> None:
        # ?code=502&only=n1: only node n1 answers 502, the others 200 (retry tests).
        only = query.get("only")
        code = int(query.get("code", "200")) if only in (None, self.name) else 200
        await self.respond(send, code, self.name.encode())

    async def do_count(self, scope: Scope, query: Query, receive: Receive, send: Send) -> None:
        await self.respond_json(send, dict(self.seen))

    async def do_bytes(self, scope: Scope, query: Query, receive: Receive, send: Send) -> None:
        total = int(query.get("n", "0"))
        headers = [(b"content-type", b"application/octet-stream"), (b"x-node", self.name.encode())]
        if query.get("chunked") != "1":
            headers.append((b"content-length", str(total).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        piece = b"x" * PIECE
        sent = 0
        while sent < total:
            size = min(PIECE, total - sent)
            sent += size
            body = piece if size == PIECE else piece[:size]
            await send({"type": "http.response.body", "body": body, "more_body": sent < total})
        if total == 0:
            await send({"type": "http.response.body", "body": b""})

    async def _body(self, receive: Any) -> Any:
        while True:
            message = await receive()
            yield message.get("body", b"")
            if not message.get("more_body"):
                return

    async def do_upload(self, scope: Scope, query: Query, receive: Receive, send: Send) -> None:
        digest = hashlib.sha256()
        size = 0
        async for part in self._body(receive):
            digest.update(part)
            size += len(part)
        chunked = any(k == b"transfer-encoding" for k, _ in scope["headers"])
        await self.respond_json(
            send, {"bytes": size, "sha256": digest.hexdigest(), "chunked": chunked}
        )

    async def do_echo(self, scope: Scope, query: Query, receive: Receive, send: Send) -> None:
        body = b"".join([part async for part in self._body(receive)])
        await self.respond(send, 200, body, b"application/octet-stream")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(
        UpstreamApp(args.name),
        host=args.host,
        port=args.port,
        log_level="warning",
        http="httptools",
        loop="uvloop",
        access_log=False,
    )


if __name__ == "__main__":
    main()
