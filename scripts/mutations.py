#!/usr/bin/env python3
"""Break each guarantee on purpose, in a copy of the repo, and check that a test notices.

    .venv/bin/python scripts/mutations.py            # every mutation (about 10 minutes)
    .venv/bin/python scripts/mutations.py --list     # what each one breaks, and its tests
    .venv/bin/python scripts/mutations.py NAME ...   # some of them
    .venv/bin/python scripts/mutations.py --check    # every snippet still applies (CI)

A test suite can pass because the code is right or because the tests cannot see the
code being wrong. For each guarantee of SPEC §7 and each store semantic, this script
copies the working tree (without .git and .venv) to a temporary folder, replaces one
exact snippet of source with a broken one, and runs the tests that claim the guarantee
against that copy (``PYTHONPATH`` puts the copy first, for the tests and for every server
process they start). A mutation that no test notices is a hole in the suite: the script
exits non-zero and names it. A snippet that no longer matches the source exactly once is
an error too, so a mutation cannot silently stop applying after a refactor.

docs/testing.md keeps the table of the last run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "run", "__pycache__", "*.pyc", ".*_cache", "test-artifacts"
)


@dataclass(frozen=True)
class Mutation:
    name: str
    guarantee: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation(
        "balancer-drops-in-flight-get",
        "SPEC §5/§7.2: a GET whose node died mid-flight is retried on another node",
        "src/sessionshare/balancer/proxy.py",
        """                if retryable or exc.kind == "connect":
                    continue
                raise _no_node_error(exc) from None""",
        """                if exc.kind == "connect":
                    continue
                raise _ClientGone() from None""",
        (
            "tests/balancer/test_failover.py",
            "tests/replication/test_cluster.py::test_check2_kill9_mid_run_then_check5_restart",
        ),
    ),
    Mutation(
        "manager-ignores-cookies",
        "SPEC §2/§7.7: a valid session cookie resumes its session",
        "src/sessionshare/core/manager.py",
        """        values = read_cookie_values(header, self.config.cookie_name)
        for value in values:""",
        """        values = read_cookie_values(header, self.config.cookie_name)
        values = []
        for value in values:""",
        ("tests/web/test_cookie_fuzz.py",),
    ),
    Mutation(
        "manager-never-writes",
        "SPEC §3/§7.1: a modified session is stored before the response",
        "src/sessionshare/core/manager.py",
        """        modified = (
            attributes != state.baseline""",
        """        modified = False and (
            attributes != state.baseline""",
        ("tests/core/test_manager.py", "tests/cluster/test_spec_checks.py"),
    ),
    Mutation(
        "no-locking",
        "SPEC §7.4: 8 clients x 25 parallel increments with locking reach 200",
        "src/sessionshare/core/locking.py",
        """        if self.mode == "none":
            return False""",
        """        if True:
            return False""",
        ("tests/web/test_middleware.py::test_parallel_increments_with_locking_lose_nothing",
         "tests/replication/test_cluster.py::test_check4_one_session_locked_across_nodes"),
    ),
    Mutation(
        "no-merge-on-conflict",
        "SPEC §3: concurrent changes to different attributes both survive",
        "src/sessionshare/core/manager.py",
        """        for name, value in after.items():
            if name not in before or dumps(before[name]) != dumps(value):
                merged[name] = value""",
        """        merged = dict(after)""",
        ("tests/stores/test_memcached_cluster.py::test_disjoint_changes_both_survive_without_locks",
         "tests/core/test_manager.py"),
    ),
    Mutation(
        "logout-undone",
        "SPEC §8: a save after a concurrent logout does not bring the session back",
        "src/sessionshare/core/manager.py",
        """                log.info(
                    "session %s was invalidated or expired during the request; "
                    "its changes are dropped",
                    session.id,
                )
                return""",
        """                version = None
                continue""",
        ("tests/web/test_logout_never_undone.py",),
    ),
    Mutation(
        "memcached-no-backup-read",
        "SPEC §4/§7.3: a session whose primary memcached died is read from its backup",
        "src/sessionshare/stores/memcached.py",
        """            failed.add(node)
            self.fresh.forget(key)
        if not backed:""",
        """            failed.add(node)
            self.fresh.forget(key)
        if True:""",
        ("tests/stores/test_memcached_cluster.py",),
    ),
    Mutation(
        "restarted-memcached-never-used-again",
        "SPEC §7.5: a restarted store node rejoins (and sessions regain two copies)",
        "src/sessionshare/stores/memcached_health.py",
        """            self.identity[node] = identity
            self._set(node, NodeState.UP)""",
        """            self.identity[node] = identity
            if previous is NodeState.DOWN:
                continue
            self._set(node, NodeState.UP)""",
        ("tests/stores/test_memcached_cluster.py::"
         "test_killed_memcached_primary_relocates_then_regains_two_copies",),
    ),
    Mutation(
        "fresh-session-on-store-outage",
        "SPEC §8: a store that is down gives 503, never a silent fresh session",
        "src/sessionshare/core/manager.py",
        """    def error_response(self, exc: SessionShareError) -> ErrorResponse:
        \"\"\"The response for a session-layer failure: 503 + Retry-After when retrying helps.\"\"\"
        if exc.status_hint == 503:""",
        """    def error_response(self, exc: SessionShareError) -> ErrorResponse:
        \"\"\"The response for a session-layer failure: 503 + Retry-After when retrying helps.\"\"\"
        if exc.status_hint == 503:
            return ErrorResponse(200, [("Content-Length", "2")], b"ok")
        if False:""",
        ("tests/stores/test_memcached_cluster.py::test_all_memcached_nodes_dead_gives_a_clear_503_in_bounded_time",
         "tests/integrations/test_flask.py", "tests/integrations/test_starlette.py"),
    ),
    Mutation(
        "login-keeps-the-id",
        "SPEC §8: login rotates the session id (fixation defence)",
        "src/sessionshare/core/session.py",
        """        if self.previous_token is None and not self.is_new:
            self.previous_token = self._sid.token
        self._sid = SessionId(new_token(), self._sid.node, self._sid.route)""",
        """        return""",
        ("tests/integrations/test_flask.py", "tests/integrations/test_starlette.py"),
    ),
    Mutation(
        "healthy-before-state-transfer",
        "SPEC §4: a joining member receives the current sessions before it reports healthy",
        "src/sessionshare/replication/store.py",
        """        self._ensure()
        return self.node.synced.is_set()""",
        """        self._ensure()
        return True""",
        ("tests/replication/test_membership_live.py::"
         "test_a_joining_member_holds_the_sessions_the_moment_it_first_reports_healthy",),
    ),
    Mutation(
        "no-re-replication-after-a-member-dies",
        "SPEC §4/§7.6: backup re-replicates a dead member's sessions (two copies again)",
        "src/sessionshare/replication/node.py",
        """        await asyncio.sleep(self.heartbeat_interval / 5)  # let a burst of changes settle
        ready = self.ready_members()""",
        """        await asyncio.sleep(self.heartbeat_interval / 5)  # let a burst of changes settle
        return
        ready = self.ready_members()""",
        ("tests/replication/test_membership_live.py::"
         "test_sessions_survive_two_members_dying_one_after_the_other",),
    ),
    Mutation(
        "django-resurrects-after-logout",
        "SPEC §8, Django: a save after a concurrent flush raises UpdateError",
        "src/sessionshare/web/django/store.py",
        """                raise UpdateError
            if not replace:""",
        """                replace, version = True, None
                continue
            if not replace:""",
        ("tests/integrations/test_django.py",),
    ),
]


def run(mutation: Mutation, python: str) -> tuple[bool, float, str]:
    """Apply ``mutation`` to a fresh copy and run its tests: (caught, seconds, last line)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutation.name}-") as folder:
        copy = Path(folder) / "repo"
        shutil.copytree(REPO, copy, ignore=SKIP)
        target = copy / mutation.path
        source = target.read_text()
        if source.count(mutation.find) != 1:
            raise SystemExit(
                f"{mutation.name}: the snippet to break occurs {source.count(mutation.find)} "
                f"times in {mutation.path}, not once: update the mutation to today's code"
            )
        target.write_text(source.replace(mutation.find, mutation.replace))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSHARE_")}
        env["PYTHONPATH"] = f"{copy / 'src'}{os.pathsep}{copy}"
        result = subprocess.run(
            [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation.tests],
            cwd=copy, env=env, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else result.stderr.strip()[-200:]
    # pytest exit 1: tests failed (caught). 0: all passed (survived). Others: broken run.
    if result.returncode not in (0, 1):
        raise SystemExit(f"{mutation.name}: pytest exited {result.returncode}: {summary}")
    return result.returncode == 1, time.monotonic() - started, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    parser.add_argument(
        "--check", action="store_true", help="only check that every mutation still applies"
    )
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in chosen:
            print(f"{m.name}\n  breaks: {m.guarantee}\n  tests:  {' '.join(m.tests)}")
        return 0
    if args.check:
        stale = [m.name for m in chosen if (REPO / m.path).read_text().count(m.find) != 1]
        for name in stale:
            print(f"{name}: its snippet no longer occurs exactly once", file=sys.stderr)
        return 1 if stale else 0
    python = str(REPO / ".venv" / "bin" / "python")
    if not Path(python).exists():
        python = sys.executable
    survivors = []
    print("| mutation | guarantee | caught | seconds | pytest's last line |")
    print("|---|---|---|---:|---|")
    for mutation in chosen:
        caught, seconds, summary = run(mutation, python)
        if not caught:
            survivors.append(mutation.name)
        verdict = "yes" if caught else "**NO**"
        print(f"| {mutation.name} | {mutation.guarantee} | {verdict} | {seconds:.0f} | {summary} |",
              flush=True)  # fmt: skip
    if survivors:
        print(f"\nnot caught by any test: {', '.join(survivors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
