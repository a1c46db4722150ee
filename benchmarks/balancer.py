"""Balancer benchmark: direct to a node vs the embedded balancer vs nginx, in one run.

    python benchmarks/balancer.py [--duration 5] [--rounds 3] [--connections 32]

Starts two demo nodes (``sessionshare node``, memory store), the embedded balancer (uvloop,
and plain asyncio for the loop comparison) and nginx from ``sessionshare balancer --lb
nginx``, all on the loopback, then drives each with ``wrk`` in interleaved rounds (so a
burst of load from elsewhere on the machine hits every target alike) and prints the
median req/s and p99 latency per target as a Markdown table, plus the httptools vs h11
parser comparison. Nothing here is asserted: speed belongs to benchmarks, not tests.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.balancer.conftest import demo_node_process  # noqa: E402
from tests.servers import ManagedProcess, ProcessPool, free_port  # noqa: E402

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}

REQUEST = (
    b"GET /api/session?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: bench/1.0\r\n"
    b"Accept: application/json\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n"
    b"Cookie: SESSIONID=0123456789abcdef0123456789abcdef.node1\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ndate: Fri, 20 Nov 2026 22:20:11 GMT\r\nserver: uvicorn\r\n"
    b"content-length: 141\r\ncontent-type: application/json\r\n"
    b"set-cookie: SESSIONID=b98529a0a8226f2824643f089940cab3.node1; Path=/; HttpOnly\r\n\r\n"
    + b"x"
    * 141
)


def wrk(url: str, duration: int, connections: int) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) from one ``wrk --latency`` run."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True, text=True, check=True, timeout=duration + 30,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", out).groups()  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if errors:
        print(f"  warning, {url}: {errors.group(0)}", file=sys.stderr)
    return rps, float(value) * _UNITS[unit]


def parser_comparison(n: int = 20000) -> list[tuple[str, float, float]]:
    """µs to parse one typical request and one response: httptools vs h11."""
    import h11
    import httptools

    class Sink:
        def on_header(self, name: bytes, value: bytes) -> None: ...
        def on_body(self, body: bytes) -> None: ...

    def with_httptools() -> tuple[float, float]:
        timings = []
        # As the proxy uses it: one request parser per connection, one per response.
        request_parser = httptools.HttpRequestParser(Sink())
        start = time.perf_counter()
        for _ in range(n):
            request_parser.feed_data(REQUEST)
        timings.append((time.perf_counter() - start) / n * 1e6)
        start = time.perf_counter()
        for _ in range(n):
            httptools.HttpResponseParser(Sink()).feed_data(RESPONSE)
        timings.append((time.perf_counter() - start) / n * 1e6)
        return timings[0], timings[1]

    def with_h11() -> tuple[float, float]:
        # A fresh Connection per message (h11's state machine must see a whole exchange).
        timings = []
        for data, role in ((REQUEST, h11.SERVER), (RESPONSE, h11.CLIENT)):
            start = time.perf_counter()
            for _ in range(n):
                conn = h11.Connection(role)
                if role is h11.CLIENT:
                    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
                    conn.send(h11.EndOfMessage())
                conn.receive_data(data)
                while conn.next_event() not in (h11.NEED_DATA, h11.PAUSED):
                    pass
            timings.append((time.perf_counter() - start) / n * 1e6)
        return timings[0], timings[1]

    return [("httptools 0.x (llhttp)", *with_httptools()), ("h11 (pure Python)", *with_h11())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; median kept")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--path", default="/api/session")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    pool = ProcessPool(Path("/tmp") / f"sessionshare-bench-{free_port()}")
    py = sys.executable
    try:
        nodes = [pool.add(demo_node_process(name, pool.log_dir)) for name in ("node1", "node2")]
        node_args = [a for n in nodes for a in ("--node", f"{n.name}={n.url}")]

        def balancer(name: str, lb: str, *extra: str) -> ManagedProcess:
            return pool.add(ManagedProcess(
                [py, "-m", "sessionshare.balancer", "--lb", lb, "--port", "{port}",
                 *node_args, *extra],
                name=name, log_dir=pool.log_dir, cwd=REPO,
            ))  # fmt: skip

        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        prefix = str(pool.log_dir / "nginx-prefix")
        targets: dict[str, ManagedProcess] = {
            "direct to node1 (1 node)": nodes[0],
            "embedded balancer (uvloop)": balancer("embedded", "builtin"),
            "embedded balancer (asyncio loop)": balancer(
                "embedded-asyncio", "builtin", "--loop", "asyncio"
            ),
            "nginx 1 worker (--lb nginx)": balancer("nginx", "nginx", "--prefix", prefix),
        }
        for target in targets.values():
            if target not in nodes:
                target.start().wait_ready()
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        for target in targets.values():  # warm-up: pools, caches, imports
            wrk(target.url + args.path, 1, args.connections)
        for round_no in range(args.rounds):
            for name, target in targets.items():
                results[name].append(wrk(target.url + args.path, args.duration, args.connections))
                print(f"round {round_no + 1}: {name}: {results[name][-1]}", file=sys.stderr)
    finally:
        pool.close()

    med: Callable[[list[float]], float] = statistics.median
    nginx = results["nginx 1 worker (--lb nginx)"]
    nginx_rps, nginx_p99 = med([r for r, _ in nginx]), med([p for _, p in nginx])
    print(f"\n`{' '.join(sys.argv)}` — wrk -t1 -c{args.connections} -d{args.duration}s "
          f"GET {args.path}, median of {args.rounds} interleaved rounds\n")  # fmt: skip
    print("| target | req/s | p99 ms | req/s ÷ nginx | p99 ÷ nginx |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        rps, p99 = med([r for r, _ in runs]), med([p for _, p in runs])
        print(f"| {name} | {rps:,.0f} | {p99:.2f} | {rps / nginx_rps:.2f} | "
              f"{p99 / nginx_p99:.2f} |")  # fmt: skip
    print("\n| parser | µs per request head | µs per response (head + 141 B body) |")
    print("|---|---:|---:|")
    for name, request_us, response_us in parser_comparison():
        print(f"| {name} | {request_us:.2f} | {response_us:.2f} |")


if __name__ == "__main__":
    main()
