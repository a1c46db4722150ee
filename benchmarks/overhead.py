"""What a session costs: req/s of a session endpoint vs a no-session one, same server.

Starts one demo node per server kind (uvicorn for ASGI, gunicorn for WSGI) with the
``memory`` store, creates 256 sessions, then drives each endpoint with wrk in
alternating rounds (so drift on a shared machine hits both alike) and prints
medians and the ratio. Each wrk connection picks a random session per request,
as real users would, so locking sees realistic (rare) contention.

    python benchmarks/overhead.py [--seconds 5] [--rounds 3] [--connections 16]

Needs ``wrk`` (``apt-get install wrk``). Numbers are for comparing within one run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LUA = """
local ids = {}
init = function(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  math.randomseed(os.time() + tonumber(tostring(ids):sub(8), 16))
end
request = function()
  if #ids == 0 then return wrk.format() end
  return wrk.format(nil, nil, {["Cookie"] = "SESSIONID=" .. ids[math.random(#ids)]})
end
"""

# (label, path, sends a session cookie)
ENDPOINTS = [
    ("no session (/healthz)", "/healthz", False),
    ("session read (/api/session?peek=1)", "/api/session?peek=1", True),
    ("session modify (/api/session)", "/api/session", True),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def node(server: str, port: int) -> Iterator[None]:
    argv = [
        sys.executable,
        "-m",
        "sessionshare",
        "--log-level",
        "warning",
        "node",
        "--name",
        "bench",
        "--port",
        str(port),
        "--server",
        server,
        "--store",
        "memory",
    ]
    log = Path(tempfile.gettempdir()) / f"sessionshare-bench-{server}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:  # not listening yet
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{server} node did not start; see {log}")
        yield
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)


def make_sessions(port: int, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/session", timeout=5) as resp:
            cookie = resp.headers["Set-Cookie"]
            ids.append(re.match(r"SESSIONID=([^;]+)", cookie)[1])  # type: ignore[index]
    return ids


def wrk(
    url: str, script: Path, ids_file: Path | None, seconds: int, connections: int
) -> tuple[float, float, int]:
    """req/s, p99 latency in ms, and non-2xx count of one wrk run."""
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    if ids_file is not None:
        argv += ["--", str(ids_file)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p99_match = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99 = float(p99_match[1]) * scale[p99_match[2]] if p99_match else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, p99, int(errors[1]) if errors else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--servers", default="uvicorn,gunicorn")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="sessionshare-bench-"))
    script = tmp / "sessions.lua"
    script.write_text(LUA)
    print(
        f"# sessionshare overhead, memory store; wrk -t2 -c{args.connections} "
        f"-d{args.seconds}s x {args.rounds} rounds; median of rounds"
    )
    print(f"{'server':9} {'endpoint':36} {'req/s':>9} {'p99 ms':>8} {'non-2xx':>8} {'ratio':>6}")
    for server in args.servers.split(","):
        port = free_port()
        with node(server, port):
            ids_file = tmp / f"{server}.ids"
            ids_file.write_text("\n".join(make_sessions(port, 256)) + "\n")
            results: dict[str, list[tuple[float, float, int]]] = {e[0]: [] for e in ENDPOINTS}
            for _ in range(args.rounds):
                for label, path, with_session in ENDPOINTS:
                    url = f"http://127.0.0.1:{port}{path}"
                    results[label].append(
                        wrk(
                            url,
                            script,
                            ids_file if with_session else None,
                            args.seconds,
                            args.connections,
                        )
                    )
            baseline = statistics.median(r[0] for r in results[ENDPOINTS[0][0]])
            for label, _, _ in ENDPOINTS:
                runs = results[label]
                rps = statistics.median(r[0] for r in runs)
                p99 = statistics.median(r[1] for r in runs)
                errors = sum(r[2] for r in runs)
                print(
                    f"{server:9} {label:36} {rps:9.0f} {p99:8.2f} {errors:8d} {rps / baseline:6.2f}"
                )


if __name__ == "__main__":
    main()
