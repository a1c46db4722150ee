"""Where a replicated request's CPU goes: demo apps driven in one process, no HTTP server.

``replication.py`` measures what a user gets (req/s through uvicorn, wrk on the same
cores), but its numbers move by several percent from run to run on a shared VM, too
much to see a change of a few microseconds. This script takes the HTTP server, the
load generator and the second process out: it builds two demo apps (two members) per
variant in one process, calls them as ASGI apps with `GET /api/session` on sessions
each owns (what the ``sticky`` policy sends), and reports the process CPU time per
request, alternating between the variants (median of the rounds):

- ``memory``: the unshared store, the baseline;
- ``solo``: ``replicated`` with one member per app, so nothing is pushed: what owning
  sessions in a replicated table costs over the plain store;
- ``in-process``: ``replicated``, but each push is handed to the other member's merge
  directly, acknowledged at once: the replication logic without frames or sockets;
- ``replicated``: the real thing, both members in this process over loopback TCP.

Both members' work is counted (they share the process), as on a 2-node machine.

    python benchmarks/replication_cpu.py [--requests 12000] [--rounds 7] [--variants a,b]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop
from overhead import free_port  # benchmarks/overhead.py

from sessionshare.config import SessionConfig
from sessionshare.core.ids import route_of
from sessionshare.demo.asgi import create_app
from sessionshare.demo.views import NodeInfo
from sessionshare.replication.node import ReplicationNode

VARIANTS = ["memory", "solo", "in-process", "replicated"]
NAMES = ["node1", "node2"]
App = Callable[..., Awaitable[None]]


async def get(app: App, cookie: str | None) -> tuple[int, str | None]:
    """One ``GET /api/session`` through the ASGI app: (status, new cookie or None)."""
    headers = [(b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", f"SESSIONID={cookie}".encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/api/session", "raw_path": b"/api/session",
        "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80), "root_path": "",
    }  # fmt: skip
    answer: dict[str, Any] = {"cookie": None}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            for name, value in message["headers"]:
                if name == b"set-cookie":
                    answer["cookie"] = value.decode().split(";")[0].split("=", 1)[1]

    await app(scope, receive, send)
    return answer["status"], answer["cookie"]


#: the member lists (their ports) whose pushes ``deliver_in_process`` hands over directly.
DIRECT: set[tuple[int, ...]] = set()


def deliver_in_process() -> None:
    """``in-process``: a member's push goes straight into the other member's merge."""
    members: dict[tuple[int, ...], dict[str, ReplicationNode]] = {}
    start, acked_over_tcp = ReplicationNode.start, ReplicationNode._acked

    class Caller:
        def __init__(self, name: str) -> None:
            self.peer = name

    async def started(self: ReplicationNode) -> None:
        await start(self)
        members.setdefault(tuple(m.port for m in self.members), {})[self.name] = self

    def acked(self: ReplicationNode, name: str, entries: list[list[Any]]) -> Any:
        cluster = tuple(m.port for m in self.members)
        if cluster not in DIRECT:
            return acked_over_tcp(self, name, entries)
        future = asyncio.get_running_loop().create_future()
        answer = members[cluster][name].on_request(Caller(self.name), "apply", [entries])  # type: ignore[arg-type]
        future.set_result(answer)
        return future

    ReplicationNode.start = started  # type: ignore[method-assign]
    ReplicationNode._acked = acked  # type: ignore[method-assign]


async def build(variant: str, sessions: int) -> tuple[list[App], list[list[str]]]:
    """Two apps and, for each, ``sessions`` session ids it owns (sticky traffic)."""
    ports = [free_port() for _ in NAMES]
    shared = " ".join(f"{name}=127.0.0.1:{port}" for name, port in zip(NAMES, ports, strict=True))
    if variant == "in-process":
        DIRECT.add(tuple(ports))
    apps: list[App] = []
    for name in NAMES:
        if variant == "memory":
            config = SessionConfig(store="memory", route=name, secret="benchmark")
        else:
            members = f"{name}=127.0.0.1:{free_port()}" if variant == "solo" else shared
            config = SessionConfig(
                store="replicated", route=name, members=members, secret="benchmark"
            )
        apps.append(create_app(NodeInfo(name, 0), config))  # type: ignore[arg-type]
    deadline = time.monotonic() + 15
    while [(await get(app, None))[0] for app in apps] != [200, 200]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{variant}: the members did not become ready")
        await asyncio.sleep(0.1)
    # Ready members learn of each other's readiness by heartbeat (500 ms): until both
    # agree, an id may route to a member that is not the owner once they do.
    await asyncio.sleep(1.5)
    owned: list[list[str]] = [[], []]
    for index, app in enumerate(apps):
        while len(owned[index]) < sessions:
            _, cookie = await get(app, None)
            assert cookie is not None
            if variant == "memory" or route_of(cookie) == NAMES[index]:
                owned[index].append(cookie)
    return apps, owned


async def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    deliver_in_process()  # only the "in-process" variant's members push at all
    workers = 4  # per app: concurrent clients, each with its own sessions
    variants = args.variants.split(",")
    built = {v: await build(v, workers * 4) for v in variants}
    per_worker = args.requests // (2 * workers)

    async def client(app: App, sessions: list[str]) -> None:
        for i in range(per_worker):
            status, _ = await get(app, sessions[i % len(sessions)])
            assert status == 200
            await asyncio.sleep(0)  # a server reads each request in a loop turn of its own

    async def one_round(variant: str) -> float:
        apps, owned = built[variant]
        started = time.process_time()
        await asyncio.gather(
            *(
                client(app, owned[index][w * 4 : w * 4 + 4])
                for index, app in enumerate(apps)
                for w in range(workers)
            )
        )
        return (time.process_time() - started) / (2 * workers * per_worker) * 1e6

    for variant in variants:  # warm-up
        await one_round(variant)
    rounds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant in variants:
            rounds[variant].append(await one_round(variant))
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12_000, help="per round and variant")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    args = parser.parse_args()
    rounds = uvloop.run(measure(args))
    base = statistics.median(rounds["memory"])
    print("# CPU time per GET /api/session, both members in one process, median of rounds")
    print(f"{'variant':12} {'us/request':>10} {'over memory':>11}")
    for variant, values in rounds.items():
        median = statistics.median(values)
        print(f"{variant:12} {median:10.1f} {median - base:+11.1f}")


if __name__ == "__main__":
    main()
