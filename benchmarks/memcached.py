"""The memcached store's cost: store round trips per request and req/s vs no session.

Starts two memcached servers and, per scenario, one demo node (uvicorn, ASGI, the
native async store) with the scenario's options; creates 256 sessions, drives one
endpoint with wrk (random session per request), and reads the node's own counters
(``/_node/status``: store round trips, node messages, requests) before and after, so
they are counted by the store client itself, not estimated. A round trip may involve
two nodes (primary + backup): "messages" counts one per node per round trip. Then it times the async
path both ways: the native asyncio store vs ``BlockingStoreAdapter(in_thread=True)``.

    python benchmarks/memcached.py [--seconds 5] [--connections 16]

Needs ``wrk`` and ``memcached`` on PATH. Compare numbers within one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from overhead import LUA, free_port, wrk  # benchmarks/overhead.py

from sessionshare.config import SessionConfig
from sessionshare.stores.base import BlockingStoreAdapter
from sessionshare.stores.memcached import AsyncMemcachedStore, MemcachedStore, cluster_from_config

# (label, session options, path, sends a session cookie)
SCENARIOS = [
    ("no session (/healthz)", {}, "/healthz", False),
    ("non-sticky modify, locking none", {"locking": "none"}, "/api/session", True),
    ("non-sticky read-only (auto, learned)", {"locking": "auto"}, "/api/session?peek=1", True),
    ("locked modify (locking all)", {"locking": "all"}, "/api/session", True),
    ("sticky read", {"sticky": "true"}, "/api/session?peek=1", True),
    ("sticky modify (backup after response)", {"sticky": "true"}, "/api/session", True),
]

NODE = "import sys; from sessionshare.cli.node import node_command; node_command(sys.argv[1:])"


@contextmanager
def process(argv: list[str], env: dict[str, str], ready: str, log: Path) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(ready, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} did not start; see {log}") from None
                time.sleep(0.1)
        yield
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


@contextmanager
def memcached(port: int, log: Path) -> Iterator[None]:
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    time.sleep(0.3)
    try:
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def create_sessions(port: int, count: int) -> list[str]:
    """Sessions made with POST, so that "auto" never sees GET /api/session modify one."""
    ids = []
    for _ in range(count):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/session",
            data=b'{"count": 0}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            ids.append(resp.headers["Set-Cookie"].split(";")[0].split("=", 1)[1])
    return ids


def node_status(port: int) -> tuple[int, int, int]:
    """(store round trips, node messages, requests) as the node counts them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_node/status", timeout=5) as resp:
        status = json.load(resp)
    store = status["store"]
    return int(store.get("round_trips", 0)), int(store.get("sends", 0)), int(status["requests"])


def async_paths(nodes: str, calls: int = 3000) -> tuple[float, float]:
    """Microseconds per session read: native asyncio store vs the thread-hop adapter."""
    config = SessionConfig.load(environ={}, store="memcached", nodes=nodes)
    native = AsyncMemcachedStore(cluster_from_config(config))
    adapter = BlockingStoreAdapter(MemcachedStore(cluster_from_config(config)), in_thread=True)

    async def timed(store: AsyncMemcachedStore | BlockingStoreAdapter) -> float:
        await store.write("bench:s:x", b"x" * 1024, ttl=60, version=None, node="n1")
        started = time.perf_counter()
        for _ in range(calls):
            await store.get("bench:s:x", node="n1", touch=60)
        return (time.perf_counter() - started) / calls * 1e6

    result = asyncio.run(timed(native)), asyncio.run(timed(adapter))
    adapter.store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="sessionshare-bench-memcached-"))
    script = tmp / "sessions.lua"
    script.write_text(LUA)
    ports = [free_port(), free_port()]
    nodes = f"n1:127.0.0.1:{ports[0]} n2:127.0.0.1:{ports[1]}"
    print(
        f"# memcached store, 2 memcached nodes, 1 uvicorn demo node; "
        f"wrk -t2 -c{args.connections} -d{args.seconds}s per row"
    )
    print(
        "| scenario | req/s | ratio to no session | store round trips / request "
        "| node messages / request | non-2xx |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    with memcached(ports[0], tmp / "mc1.log"), memcached(ports[1], tmp / "mc2.log"):
        baseline = None
        for label, options, path, with_session in SCENARIOS:
            port = free_port()
            env = {**os.environ, "SESSIONSHARE_STORE": "memcached", "SESSIONSHARE_NODES": nodes}
            env |= {f"SESSIONSHARE_{k.upper()}": v for k, v in options.items()}
            argv = [sys.executable, "-c", NODE, "--name", "bench", "--port", str(port)]
            with process(argv, env, f"http://127.0.0.1:{port}/healthz", tmp / "node.log"):
                ids_file = tmp / "ids"
                ids_file.write_text("\n".join(create_sessions(port, 256)) + "\n")
                for _ in range(3):  # let "auto" learn that a read-only endpoint is one
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}").close()
                trips, sends, requests = node_status(port)
                rps, _, errors = wrk(
                    f"http://127.0.0.1:{port}{path}",
                    script,
                    ids_file if with_session else None,
                    args.seconds,
                    args.connections,
                )
                trips_after, sends_after, requests_after = node_status(port)
            handled = max(1, requests_after - requests - 1)
            per_request = (trips_after - trips) / handled
            messages = (sends_after - sends) / handled
            baseline = baseline or rps
            print(
                f"| {label} | {rps:.0f} | {rps / baseline:.2f} | {per_request:.2f} "
                f"| {messages:.2f} | {errors} |"
            )
        native, adapter = async_paths(nodes)
    print()
    print(
        f"async session read, 1 KiB: native asyncio store {native:.0f} us, "
        f"BlockingStoreAdapter(in_thread=True) {adapter:.0f} us"
    )


if __name__ == "__main__":
    main()
