"""Peer replication's cost: req/s, added latency and memory, vs the unshared memory store.

For each store (``memory``, ``replicated``, ``backup``, and ``replicated`` with
``replication_async``) starts two demo nodes (uvicorn, one worker each), all at once, and
measures in rounds that alternate between the stores (drift on a shared machine then
hits all of them alike):

- **req/s** of ``GET /api/session`` (a locked modify: lock, read, write, unlock) with
  one wrk per node in parallel, summed, for two ways of spreading the sessions:

  - ``sticky``: each node gets the sessions whose id names it as the route, which is
    what a balancer with the ``sticky`` policy does. With ``memory`` that is the node
    that created the session (the only one that has it: this is the only traffic the
    unshared store can serve at all); with the peer stores it is the node that owns the
    session (``ReplicationNode.owner_route``), so locks are taken locally and the one
    message of a modifying request is the push to the other member;
  - ``round-robin``: both nodes get *all* sessions (the peer stores only), so half the
    requests land on the node that does not own the session and take its lock by a
    message to the owner: the cost of a balancer that ignores routes.

  The target (issue #4) compares like with like: peer stores under ``sticky`` against
  the unshared memory store, which only works under that traffic;
- **CPU per request**: user + system time of both node processes during those rounds,
  over the requests they answered. Less noisy than req/s on a shared machine, and it does
  not count the load generator: memory's CPU per request over a peer store's is the
  throughput ratio the nodes would reach if they had the cores to themselves;
- **added latency**: wrk with one connection (requests one after another) on node 2,
  sticky traffic, mean latency minus the memory store's;
- **memory per 10 000 sessions**: growth of each node's resident memory while wrk
  without a cookie creates sessions (one per request), scaled by the session count
  the node reports (``/_node/status``).

    python benchmarks/replication.py [--seconds 5] [--rounds 3] [--connections 16] [--drill 4]

``--drill N`` also measures the risk of ``replication_async``: N times, twenty clients
increment their counters on node 1, which is then ``kill -9``-ed; how many of the
counts node 1 had answered are missing on node 2, synchronous vs asynchronous.

Needs ``wrk``. Numbers move between runs on a shared machine: compare within one run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overhead import LUA, free_port, make_sessions, wrk  # benchmarks/overhead.py

from sessionshare.core.ids import route_of

#: ``+async``: the same store with ``replication_async = true`` (answer before acks);
#: ``+floor``: replication reduced to one acknowledged byte (``ack_floor_node.py``).
STORES = ["memory", "replicated", "backup", "replicated+async", "replicated+floor"]
SECRET = "benchmark-secret"
NODE = ["-c", "from sessionshare.cli.main import main; main()"]
FLOOR_NODE = [str(Path(__file__).resolve().parent / "ack_floor_node.py")]


@contextmanager
def node(name: str, port: int, store: str, members: str, log: Path) -> Iterator[int]:
    """One demo node; yields its pid once ``/healthz`` says 200 (state transfer done)."""
    kind, _, mode = store.partition("+")
    program = FLOOR_NODE if mode == "floor" else NODE
    argv = [sys.executable, *program, "--log-level", "warning", "node", "--name", name,
            "--port", str(port), "--store", kind]  # fmt: skip
    if kind != "memory":
        argv += ["--members", members]
    if mode == "async":
        argv += ["-o", "replication_async=true"]
    env = {**os.environ, "SESSIONSHARE_SECRET": SECRET}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"node {name} did not start; see {log}") from None
                time.sleep(0.1)
        yield proc.pid
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)


def rss(pid: int) -> int:
    """Resident bytes of one process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes used so far (``/proc/<pid>/stat``)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def sessions_held(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_node/status", timeout=5) as resp:
        return int(json.load(resp)["sessions"])


def parallel_wrk(
    jobs: list[tuple[str, Path | None]], script: Path, seconds: int, conns: int
) -> list[tuple[float, float, int]]:
    """One wrk per (url, ids file) at the same time; [(req/s, p99 ms, non-2xx)] in order."""
    results: list[tuple[float, float, int]] = [(0.0, 0.0, 0)] * len(jobs)

    def run(index: int, url: str, ids: Path | None) -> None:
        results[index] = wrk(url, script, ids, seconds, conns)

    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    return results


def mean_latency_ms(url: str, script: Path, ids: Path, seconds: int) -> float:
    """wrk's mean latency with one connection: the time of one request, end to end."""
    argv = ["wrk", "-t1", "-c1", f"-d{seconds}s", "-s", str(script), url, "--", str(ids)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    match = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out)
    assert match is not None, out
    return float(match[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match[2]]


@dataclass
class Pair:
    """Two running nodes of one store, with the session ids each wrk sends, per traffic."""

    store: str
    ports: list[int]
    pids: list[int]
    #: traffic ("sticky", "round-robin") -> the ids file of each node's wrk
    ids_files: dict[str, list[Path]]
    #: traffic -> per round: (req/s, p99 ms, non-2xx, both nodes' CPU µs per request)
    rounds: dict[str, list[tuple[float, float, int, float]]] = field(default_factory=dict)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}/api/session" for port in self.ports]


def start_pair(stack: ExitStack, store: str, tmp: Path) -> Pair:
    ports = [free_port(), free_port()]
    members = " ".join(f"node{i + 1}=127.0.0.1:{free_port()}" for i in range(2))
    pids = [
        stack.enter_context(node(f"node{i + 1}", port, store, members, tmp / f"{store}-{i}.log"))
        for i, port in enumerate(ports)
    ]
    ids = [*make_sessions(ports[0], 128), *make_sessions(ports[1], 128)]
    sticky = [[sid for sid in ids if route_of(sid) == f"node{i + 1}"] for i in range(2)]
    traffic = {"sticky": sticky}
    if store != "memory":  # the unshared store cannot serve another node's sessions
        traffic["round-robin"] = [ids, ids]
    files: dict[str, list[Path]] = {}
    for name, per_node in traffic.items():
        files[name] = []
        for i, chosen in enumerate(per_node):
            path = tmp / f"{store}-{name}-{i}.ids"
            path.write_text("\n".join(chosen) + "\n")
            files[name].append(path)
    return Pair(store, ports, pids, files)


def measure(pairs: list[Pair], script: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rounds alternate between the stores, so drift on a shared machine hits all alike."""
    for _ in range(args.rounds):
        for pair in pairs:
            for traffic, files in pair.ids_files.items():
                jobs: list[tuple[str, Path | None]] = list(zip(pair.urls, files, strict=True))
                cpu_before = cpu_seconds(pair.pids)
                runs = parallel_wrk(jobs, script, args.seconds, args.connections // 2)
                cpu = cpu_seconds(pair.pids) - cpu_before
                rps = sum(r[0] for r in runs)
                cpu_us = cpu / max(rps * args.seconds, 1) * 1e6
                result = (rps, max(r[1] for r in runs), sum(r[2] for r in runs), cpu_us)
                pair.rounds.setdefault(traffic, []).append(result)
    latencies: dict[str, list[float]] = {pair.store: [] for pair in pairs}
    for _ in range(args.rounds):
        for pair in pairs:
            latencies[pair.store].append(
                mean_latency_ms(pair.urls[1], script, pair.ids_files["sticky"][1], args.seconds)
            )
    results = []
    for pair in pairs:
        before = [rss(pid) for pid in pair.pids]
        held_before = sessions_held(pair.ports[0])
        parallel_wrk([(pair.urls[0], None)], script, args.seconds, args.connections)
        created = sessions_held(pair.ports[0]) - held_before
        growth = max(rss(pid) - b for pid, b in zip(pair.pids, before, strict=True))
        for traffic, rounds in pair.rounds.items():
            results.append(
                {
                    "store": pair.store,
                    "traffic": traffic,
                    "rps": statistics.median(r[0] for r in rounds),
                    "p99": statistics.median(r[1] for r in rounds),
                    "errors": sum(r[2] for r in rounds),
                    "cpu_us": statistics.median(r[3] for r in rounds),
                    "latency": statistics.median(latencies[pair.store]),
                    "mib_per_10k": growth / max(created, 1) * 10_000 / 2**20,
                }
            )
    return results


def get(port: int, cookie: str | None, path: str = "/api/session") -> tuple[str | None, int]:
    """(cookie, count) of one request; raises OSError when the node is gone."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if cookie:
        request.add_header("Cookie", f"SESSIONID={cookie}")
    with urllib.request.urlopen(request, timeout=5) as resp:
        match = re.match(r"SESSIONID=([^;]*)", resp.headers.get("Set-Cookie") or "")
        return (match[1] if match else cookie), int(json.load(resp)["count"])


def increment(
    port: int, index: int, last: list[tuple[str | None, int]], stop: threading.Event
) -> None:
    """One client: increment until told to stop or the node is gone; keep the last answer."""
    cookie: str | None = None
    for _ in range(10_000):  # bounded; the kill ends it well before
        if stop.is_set():
            return
        try:
            cookie, count = get(port, cookie)
        except (OSError, http.client.HTTPException):  # killed, maybe mid-response
            return
        last[index] = (cookie, count)


def drill(store: str, tmp: Path, kills: int, clients: int) -> tuple[int, int]:
    """``kill -9`` the node clients talk to, mid-run, ``kills`` times: how many writes
    that were answered 200 are missing on the survivor? (acknowledged, lost)."""
    acknowledged = lost = 0
    for attempt in range(kills):
        ports = [free_port(), free_port()]
        members = " ".join(f"node{i + 1}=127.0.0.1:{free_port()}" for i in range(2))
        with ExitStack() as stack:
            pids = [
                stack.enter_context(
                    node(f"node{i + 1}", p, store, members, tmp / f"drill-{attempt}-{i}.log")
                )
                for i, p in enumerate(ports)
            ]
            last: list[tuple[str | None, int]] = [(None, 0)] * clients
            stop = threading.Event()
            threads = [
                threading.Thread(target=increment, args=(ports[0], i, last, stop))
                for i in range(clients)
            ]
            for thread in threads:
                thread.start()
            time.sleep(1.5)
            os.kill(pids[0], 9)
            stop.set()
            for thread in threads:
                thread.join(10)
            for cookie, count in last:
                if cookie is None:
                    continue
                acknowledged += 1
                _, seen = get(ports[1], cookie, "/api/session?peek=1")
                lost += seen < count
    return acknowledged, lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument(
        "--drill",
        type=int,
        default=0,
        metavar="KILLS",
        help="also kill -9 a node KILLS times under load: acknowledged writes lost, sync vs async",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="sessionshare-bench-"))
    script = tmp / "sessions.lua"
    script.write_text(LUA)
    print(
        f"# peer replication vs unshared memory: 2 uvicorn nodes, GET /api/session (locked "
        f"modify), wrk -t2 -c{args.connections // 2} per node x 2 nodes, {args.seconds}s, "
        f"median of {args.rounds} alternating rounds; latency: -c1 on node2; memory: RSS "
        "growth per node; CPU: both nodes' user + system time per request"
    )
    print(
        f"{'store':16} {'traffic':11} {'req/s':>8} {'vs memory':>9} {'p99 ms':>7} "
        f"{'non-2xx':>7} {'CPU us/req':>10} {'latency ms':>10} {'added ms':>8} "
        f"{'MiB/10k sessions':>16}"
    )
    stores = args.stores.split(",")
    with ExitStack() as stack:
        pairs = [start_pair(stack, store, tmp) for store in stores]
        results = measure(pairs, script, args)
    baseline = results[0]
    for result in results:
        print(
            f"{result['store']:16} {result['traffic']:11} {result['rps']:8.0f} "
            f"{result['rps'] / baseline['rps']:9.2f} {result['p99']:7.2f} "
            f"{result['errors']:7.0f} {result['cpu_us']:10.1f} {result['latency']:10.3f} "
            f"{result['latency'] - baseline['latency']:8.3f} {result['mib_per_10k']:16.1f}"
        )
    if args.drill:
        print(f"# kill -9 of the node 20 clients talk to, {args.drill} times: last answered")
        print("# count of each client vs what the surviving node has")
        for store in ("replicated", "replicated+async"):
            acknowledged, lost = drill(store, tmp, args.drill, 20)
            print(f"{store:17} acknowledged {acknowledged:4d}   lost {lost:4d}")
    print(f"# logs: {tmp}")


if __name__ == "__main__":
    main()
