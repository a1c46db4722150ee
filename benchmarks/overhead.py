"""What a session costs: the same request with and without a session, same server, one run.

Like the field notes' comparison (Flask-Session, Django, Starlette cookies): the app of
``benchmarks/bench_app.py`` increments a counter beside a ~1 KiB dict, either in the session
(``/api/session``, a locked modify under the default ``locking = auto``) or in a global dict
(``/api/plain``, no session); ``/api/read`` reads the session (learned read-only: no lock).
For each server (uvicorn + Starlette, gunicorn + Flask, one worker each) and each store
(``memory``; ``memcached`` with two real memcached servers, primary + backup), wrk drives
each endpoint in alternating rounds (drift on a shared machine hits all alike); each wrk
connection picks one of 256 sessions at random per request. Prints medians, the ratio to
``/api/plain`` and the added time per request.

    python benchmarks/overhead.py [--seconds 5] [--rounds 3] [--connections 16]

Needs ``wrk`` (``apt-get install wrk``); ``memcached`` for the memcached rows.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
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

HERE = Path(__file__).resolve().parent
SCRIPT = Path(tempfile.gettempdir()) / "sessionshare-bench" / "sessions.lua"

# (label, path, sends a session cookie)
ENDPOINTS = [
    ("no session (/api/plain)", "/api/plain", False),
    ("session modify, locked (/api/session)", "/api/session", True),
    ("session read-only (/api/read)", "/api/read", True),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(kind: str, port: int, env: dict[str, str]) -> Iterator[None]:
    """The bench app on a real server: uvicorn (ASGI) or gunicorn (WSGI), one worker."""
    if kind == "uvicorn":
        argv = [sys.executable, "-m", "uvicorn", "--factory", "bench_app:asgi_app",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                "--no-access-log"]  # fmt: skip
    else:
        argv = [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}",
                "--workers", "1", "--log-level", "warning", "bench_app:wsgi_app()"]  # fmt: skip
    log = Path(tempfile.gettempdir()) / f"sessionshare-bench-{kind}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=HERE,
                                env={**os.environ, **env}, start_new_session=True)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/api/plain", f"{kind} did not start; see {log}")
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@contextmanager
def memcached_pair() -> Iterator[str]:
    """Two memcached servers on free ports; yields the ``nodes`` option."""
    ports = [free_port(), free_port()]
    procs = [subprocess.Popen(["memcached", "-l", "127.0.0.1", "-p", str(p), "-U", "0",
                               "-m", "64", "-u", "root"], start_new_session=True)
             for p in ports]  # fmt: skip
    try:
        time.sleep(0.3)
        yield " ".join(f"m{i + 1}:127.0.0.1:{p}" for i, p in enumerate(ports))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def wait_http(url: str, message: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:  # not listening yet
            time.sleep(0.1)
    raise RuntimeError(message)


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


def measure(kind: str, env: dict[str, str], tmp: Path, args: argparse.Namespace) -> None:
    """One server + store: every endpoint, alternating rounds, one table block."""
    port = free_port()
    with server(kind, port, env):
        ids_file = tmp / f"{kind}.ids"
        ids_file.write_text("\n".join(make_sessions(port, 256)) + "\n")
        for _ in range(3):  # teach `auto` locking that /api/read is read-only
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/read", timeout=5)
        results: dict[str, list[tuple[float, float, int]]] = {e[0]: [] for e in ENDPOINTS}
        for _ in range(args.rounds):
            for label, path, with_session in ENDPOINTS:
                ids = ids_file if with_session else None
                url = f"http://127.0.0.1:{port}{path}"
                results[label].append(wrk(url, SCRIPT, ids, args.seconds, args.connections))
    baseline = statistics.median(r[0] for r in results[ENDPOINTS[0][0]])
    for label, _, _ in ENDPOINTS:
        runs = results[label]
        rps = statistics.median(r[0] for r in runs)
        p99 = statistics.median(r[1] for r in runs)
        errors = sum(r[2] for r in runs)
        added_us = (1 / rps - 1 / baseline) * 1e6  # one worker: ~ server time per request
        print(
            f"| {kind} | {env['SESSIONSHARE_STORE']} | {label} | {rps:.0f} | {p99:.2f} | "
            f"{errors} | {rps / baseline:.2f} | {added_us:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--servers", default="uvicorn,gunicorn")
    parser.add_argument("--stores", default="memory,memcached")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="sessionshare-bench-"))
    SCRIPT.parent.mkdir(parents=True, exist_ok=True)
    SCRIPT.write_text(LUA)
    print(
        f"wrk -t2 -c{args.connections} -d{args.seconds}s, median of {args.rounds} rounds; "
        "ratio = req/s / the same server's /api/plain; added = per-request time over "
        "/api/plain (1/req/s difference: the one worker's time per request)\n"
    )
    print("| server | store | endpoint | req/s | p99 ms | non-2xx | ratio | added µs |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for store in args.stores.split(","):
        for kind in args.servers.split(","):
            env = {"SESSIONSHARE_STORE": store}
            if store == "memcached":
                if shutil.which("memcached") is None:
                    sys.exit("memcached is not installed: apt-get install memcached")
                with memcached_pair() as nodes:
                    measure(kind, {**env, "SESSIONSHARE_NODES": nodes}, tmp, args)
            else:
                measure(kind, env, tmp, args)


if __name__ == "__main__":
    main()
