"""Real server processes for tests: memcached, redis, nginx and any app-node command.

Why real processes: sessionshare's promises (failover, relocation, locking under load) only mean
something against the real servers and real TCP, so tests start them on free loopback ports and
kill them by pid. Everything here is built so that a failing test can never leave a process
behind:

* each child runs in its own session / process group (``start_new_session=True``), so signalling
  the group also reaches grandchildren such as nginx workers or uvicorn workers;
* the group is only ever signalled while the leader is still *unreaped* (alive or a zombie). An
  unreaped pid cannot be recycled by the kernel, so a signal can never hit an unrelated process
  that happened to get the same pid later. That is why exit status is checked with
  ``waitid(..., WNOWAIT)`` instead of ``Popen.poll()`` (which reaps);
* every started process is registered in ``_LIVE`` and stopped at interpreter exit as a last
  resort; the pytest fixtures stop theirs at teardown.

Typical use for an app node (``{port}`` in argv is replaced by the port)::

    node = ManagedProcess(
        ["sessionshare", "node", "--name", "node1", "--port", "{port}"],
        name="node1", ready_path="/healthz", log_dir=tmp_path,
    )
    node.start().wait_ready(timeout=15)
    ...
    node.kill()      # failure drill: SIGKILL, no goodbye
    node.restart()   # same port, new pid, waits until /healthz answers
    node.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import pytest

LOOPBACK = "127.0.0.1"

#: Where Debian puts daemons. Non-root shells often lack these on PATH, yet nginx lives there.
_SBIN_DIRS = "/usr/local/sbin:/usr/sbin:/sbin"

#: Binary name -> Debian package, so a missing binary can say exactly what to install.
APT_PACKAGES: dict[str, str] = {
    "memcached": "memcached",
    "redis-server": "redis-server",
    "nginx": "nginx-light",
    "chromium": "chromium",
}

# Ports handed out recently by free_port(). The kernel may return the same ephemeral port twice
# in a row once the probe socket is closed; remembering them stops two servers of one test from
# being given the same port before either has bound it.
_HANDED_OUT: set[int] = set()

# Every ManagedProcess that may be running. Stopped at exit, so even code that forgets to stop
# a process (or a crashed fixture) leaves nothing behind when the interpreter ends normally.
_LIVE: set[ManagedProcess] = set()


class MissingBinaryError(FileNotFoundError):
    """A server binary is not installed; the message says which package provides it."""


class NginxConfigError(ValueError):
    """``nginx -t`` rejected the config. Not a RuntimeError, so start-up retries skip it."""


def install_hint(binary: str, package: str | None = None) -> str:
    """Say how to get ``binary``: one line a developer can paste, and the CI fix."""
    pkg = package or APT_PACKAGES.get(binary, binary)
    return (
        f"{binary!r} not found on PATH: install it with `apt-get install {pkg}` "
        f"(scripts/test does this automatically when run as root)"
    )


def find_binary(name: str) -> str | None:
    """Locate ``name`` on PATH, then in the sbin directories (where Debian installs nginx)."""
    return shutil.which(name) or shutil.which(name, path=_SBIN_DIRS)


def in_ci() -> bool:
    """True in CI, where skips are forbidden. CI systems export ``CI=true``, some ``CI=1``
    or ``CI=yes``: any value but empty, ``0``, ``false`` or ``no`` counts."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_binary(name: str, package: str | None = None) -> str:
    """Return the path of ``name`` or stop the current test.

    Under ``CI=true`` a missing server is a broken CI image, so the test *fails* with the
    install command; on a developer machine it skips with the same message so that the rest of
    the suite still runs.
    """
    path = find_binary(name)
    if path is not None:
        return path
    message = install_hint(name, package)
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The port is found by binding to port 0. There is an unavoidable race between closing the
    probe socket and the server binding it; factories therefore retry on a new port when a
    server dies at start-up (see :func:`start_on_free_port`).
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("could not find a free port that was not handed out already")


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_exists(pid: int) -> bool:
    """True when ``pid`` names a process that has not been reaped (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # Field 3 (after the parenthesised command name, which may contain spaces) is the state.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z"


def group_pids(pgid: int) -> list[int]:
    """Pids of live processes in process group ``pgid`` (used to prove nothing was left)."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


class ManagedProcess:
    """One child process on a known loopback port, started and stopped by pid.

    ``argv`` items may contain ``{port}``, replaced by the port (allocated with
    :func:`free_port` when ``port`` is None). Output goes to ``log_path`` (appended across
    restarts) so that a failing test can show what the server said. ``ready_path`` makes
    :meth:`wait_ready` wait for an HTTP 2xx on that path, not only for the port to accept.
    """

    #: Seconds to wait after SIGTERM before SIGKILL, and after SIGKILL before giving up.
    stop_timeout: float = 5.0
    #: Signal :meth:`stop` sends first. Servers with nothing to flush may use SIGKILL.
    stop_signal: int = signal.SIGTERM

    def __init__(
        self,
        argv: Sequence[str],
        port: int | None = None,
        *,
        name: str | None = None,
        host: str = LOOPBACK,
        log_dir: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        ready_path: str | None = None,
        ready_timeout: float = 15.0,
    ) -> None:
        self.port: int = port if port is not None else free_port(host)
        self.host = host
        self.argv: list[str] = [str(a).replace("{port}", str(self.port)) for a in argv]
        self.name = name or Path(self.argv[0]).name
        self.env = env
        self.cwd = cwd
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        directory = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp("-servers"))
        directory.mkdir(parents=True, exist_ok=True)
        self.log_dir = directory
        self.log_path: Path = directory / f"{self.name}-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._paused = False
        self._returncode: int | None = None
        self._ended_by: str | None = None  # "stopped" / "killed" when we ended it, for repr
        self.starts = 0

    # -- state ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Pid of the current (or last) child; None before the first start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def address(self) -> str:
        """``host:port``, the form memcached node lists and redis URLs are built from."""
        return f"{self.host}:{self.port}"

    @property
    def addr(self) -> tuple[str, int]:
        """``(host, port)``, the form socket and pymemcache clients take."""
        return (self.host, self.port)

    @property
    def url(self) -> str:
        """``http://host:port`` for HTTP servers (app nodes, nginx)."""
        return f"http://{self.host}:{self.port}"

    def _exit_status(self) -> int | None:
        """Exit code of the child if it has exited, without reaping it (see module docstring).

        Negative values are signal numbers, as in ``Popen.returncode``.
        """
        if self._proc is None:
            return None
        if self._returncode is not None:
            return self._returncode
        try:
            info = os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped by someone else
            return self._proc.returncode if self._proc.returncode is not None else -1
        if info is None:
            return None
        if info.si_code == os.CLD_EXITED:
            return info.si_status
        return -info.si_status

    @property
    def running(self) -> bool:
        """True while the child has not exited (a paused child counts as running)."""
        return self._proc is not None and self._exit_status() is None

    @property
    def returncode(self) -> int | None:
        """Exit code once the child has exited; None while it runs or before it started."""
        return self._exit_status()

    def __repr__(self) -> str:
        if self._proc is None:
            state = "not started"
        else:
            status = self._exit_status()
            if status is None:
                state = "paused" if self._paused else "running"
            elif self._ended_by is not None:
                state = f"{self._ended_by} (rc={status})"
            else:
                state = f"exited on its own (rc={status})"
        return f"<{type(self).__name__} {self.name} pid={self.pid} {self.address} {state}>"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the child in its own process group; does not wait (see :meth:`wait_ready`)."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self._reap()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self._log.write(f"--- start #{self.starts + 1}: {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        self.starts += 1
        self._returncode = None
        self._paused = False
        self._ended_by = None
        _LIVE.add(self)
        return self

    def probe(self) -> bool:
        """One readiness check; subclasses speak their protocol to prove it is really them."""
        if not port_is_open(self.host, self.port):
            return False
        if self.ready_path is None:
            return True
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
        try:
            conn.request("GET", self.ready_path)
            return 200 <= conn.getresponse().status < 300
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def wait_ready(self, timeout: float | None = None) -> Self:
        """Block until :meth:`probe` succeeds; raise with the log tail if the child dies.

        Bounded by ``timeout`` (default ``ready_timeout``): a server that never comes up makes
        the test fail with its own error output instead of hanging the suite.
        """
        if self._proc is None:
            raise RuntimeError(f"{self!r}: wait_ready() before start()")
        deadline = time.monotonic() + (self.ready_timeout if timeout is None else timeout)
        delay = 0.01
        while True:
            status = self._exit_status()
            if status is not None:
                raise RuntimeError(
                    f"{self!r} exited with {status} before it was ready; log:\n{self.log_tail()}"
                )
            # Check the child is still alive *after* a successful probe: with a port race,
            # another process may answer on the port while ours is dying of EADDRINUSE.
            if self.probe() and self._exit_status() is None:
                return self
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self!r} not ready after {timeout or self.ready_timeout}s; "
                    f"log:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _signal_group(self, sig: int) -> None:
        """Signal the child's whole group; only called while the leader is unreaped."""
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _wait_exit(self, timeout: float) -> bool:
        """Wait (bounded) for the leader to exit, without reaping it."""
        deadline = time.monotonic() + timeout
        while self._exit_status() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _reap(self) -> None:
        """Collect the exit status, kill group stragglers, close the log.

        Stragglers (e.g. a worker whose master died) are killed *before* reaping, while the
        leader's pid, and so the group id, cannot have been recycled.
        """
        if self._proc is not None and self._returncode is None:
            status = self._exit_status()
            if status is not None:
                self._signal_group(signal.SIGKILL)
                self._proc.wait(timeout=self.stop_timeout)
                self._returncode = status
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._returncode is not None or self._proc is None:
            _LIVE.discard(self)

    def stop(self) -> None:
        """Send ``stop_signal`` to the group, then SIGKILL if it lingers. Bounded, idempotent."""
        if self._proc is None:
            return
        if self._exit_status() is None:
            self._signal_group(self.stop_signal)
            if self._paused:  # a stopped process only acts on SIGTERM once continued
                self._signal_group(signal.SIGCONT)
            if not self._wait_exit(self.stop_timeout):
                self._signal_group(signal.SIGKILL)
                if not self._wait_exit(self.stop_timeout):
                    raise RuntimeError(f"{self!r} survived SIGKILL for {self.stop_timeout}s")
            self._ended_by = "stopped"
        self._paused = False
        self._reap()

    def kill(self) -> None:
        """Failure drill: SIGKILL the group at once (no shutdown handlers run), then reap."""
        if self._proc is None:
            return
        if self._exit_status() is None:
            self._signal_group(signal.SIGKILL)
            if not self._wait_exit(self.stop_timeout):
                raise RuntimeError(f"{self!r} survived SIGKILL for {self.stop_timeout}s")
            self._ended_by = "killed"
        self._paused = False
        self._reap()

    def _group_stopped(self) -> bool:
        """True when every thread of every process in the group is in state T (stopped)."""
        assert self._proc is not None
        for pid in group_pids(self._proc.pid):
            for task in Path(f"/proc/{pid}/task").glob("*/stat"):
                try:
                    state = task.read_text().rsplit(")", 1)[1].split()[0]
                except (OSError, IndexError):
                    continue
                if state not in ("T", "t", "Z", "X"):
                    return False
        return True

    def _wait_group(self, stopped: bool, timeout: float = 5.0) -> None:
        """Wait (bounded) until the group is fully stopped / running again.

        Signals are delivered asynchronously: without this, a request sent right after
        :meth:`pause` can still be answered by a thread that has not stopped yet.
        """
        deadline = time.monotonic() + timeout
        while self._group_stopped() is not stopped:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self!r}: group not {'stopped' if stopped else 'resumed'}")
            time.sleep(0.005)

    def pause(self) -> None:
        """Freeze the group with SIGSTOP: the port still accepts, nothing answers (a hung node).

        Returns once every thread is stopped, so the very next request really hangs.
        """
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        self._signal_group(signal.SIGSTOP)
        self._paused = True
        self._wait_group(stopped=True)

    def resume(self) -> None:
        """Undo :meth:`pause` with SIGCONT; returns once the group runs again."""
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        self._signal_group(signal.SIGCONT)
        self._paused = False
        self._wait_group(stopped=False)

    def restart(self, timeout: float | None = None) -> Self:
        """Stop if needed, then start again on the SAME port and wait until ready.

        Same port matters: clients, node lists and balancers keep the old address, exactly as
        when an operator restarts a crashed server.
        """
        self.stop()
        self.start()
        return self.wait_ready(timeout)

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The last ``max_bytes`` of the child's output, for error messages."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return "(no log)"
        return data[-max_bytes:].decode(errors="replace")

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start().wait_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _probe_line(host: str, port: int, request: bytes, expect: bytes) -> bool:
    """Send one protocol line and check the reply's start (memcached ``version``, redis PING)."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith(expect)
    except OSError:
        return False


class MemcachedServer(ManagedProcess):
    """memcached on loopback, TCP only, small memory, ready when it answers ``version``.

    :meth:`stop` uses SIGKILL: memcached keeps nothing to flush, and on SIGTERM 1.6 idles
    ~0.7 s until its clock tick notices, which adds up over hundreds of fixtures. Clients see
    the same closed connections either way.
    """

    stop_signal: int = signal.SIGKILL

    def __init__(
        self,
        port: int | None = None,
        *,
        memory_mb: int = 64,
        extra_args: Sequence[str] = (),
        log_dir: str | os.PathLike[str] | None = None,
        name: str = "memcached",
    ) -> None:
        binary = find_binary("memcached")
        if binary is None:
            raise MissingBinaryError(install_hint("memcached"))
        argv = [binary, "-l", LOOPBACK, "-p", "{port}", "-U", "0", "-m", str(memory_mb)]
        if os.geteuid() == 0:  # memcached refuses to run as root without -u
            argv += ["-u", pwd.getpwuid(0).pw_name]
        super().__init__([*argv, *extra_args], port, name=name, log_dir=log_dir)

    def probe(self) -> bool:
        return _probe_line(self.host, self.port, b"version\r\n", b"VERSION")


class RedisServer(ManagedProcess):
    """redis-server on loopback with persistence off, so a restart really loses the data."""

    def __init__(
        self,
        port: int | None = None,
        *,
        extra_args: Sequence[str] = (),
        log_dir: str | os.PathLike[str] | None = None,
        name: str = "redis",
    ) -> None:
        binary = find_binary("redis-server")
        if binary is None:
            raise MissingBinaryError(install_hint("redis-server"))
        super().__init__([], port, name=name, log_dir=log_dir)
        # --dir keeps any file redis might write inside the test's directory.
        data_dir = self.log_dir / f"{name}-{self.port}-data"
        data_dir.mkdir(exist_ok=True)
        self.argv = [
            binary, "--port", str(self.port), "--bind", LOOPBACK,
            "--save", "", "--appendonly", "no", "--dir", str(data_dir),
            *extra_args,
        ]  # fmt: skip

    @property
    def redis_url(self) -> str:
        """``redis://host:port/0`` as the redis store's ``nodes`` option takes it."""
        return f"redis://{self.host}:{self.port}/0"

    def probe(self) -> bool:
        return _probe_line(self.host, self.port, b"PING\r\n", b"+PONG")


_TEMP_PATHS = """\
    client_body_temp_path temp/client_body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;
"""


class NginxServer(ManagedProcess):
    """nginx with a private prefix directory, so it never touches /etc, /var/log or /run.

    ``config`` is either a full ``nginx.conf`` (it has an ``events`` block) or just the
    contents of the ``http {}`` block (``server { listen 127.0.0.1:PORT; ... }``), which is
    wrapped in a minimal main config. Relative paths in the config resolve inside the prefix
    (``nginx -p``). The config is checked with ``nginx -t`` first so a typo fails with nginx's
    own message rather than a readiness timeout. ``port`` must be the port the config listens
    on (nginx's own config says where it listens; this class only waits for it).
    """

    def __init__(
        self,
        config: str,
        port: int,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        name: str = "nginx",
    ) -> None:
        binary = find_binary("nginx")
        if binary is None:
            raise MissingBinaryError(install_hint("nginx"))
        super().__init__([], port, name=name, log_dir=log_dir)
        self.prefix: Path = self.log_dir / f"{name}-{port}"
        for sub in ("logs", "temp", "conf"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.conf_path: Path = self.prefix / "conf" / "nginx.conf"
        self.error_log: Path = self.prefix / "logs" / "error.log"
        self.config_text = self._complete(config)
        self.conf_path.write_text(self.config_text)
        globals_ = [] if re.search(r"^\s*daemon\s", self.config_text, re.M) else ["daemon off;"]
        if not re.search(r"^\s*pid\s", self.config_text, re.M):
            globals_.append(f"pid {self.prefix / 'logs' / 'nginx.pid'};")
        # -e sets the error log before the config is read; without it nginx first opens the
        # compiled-in /var/log/nginx/error.log, which a non-root user cannot write.
        self._base = [binary, "-p", f"{self.prefix}/", "-c", str(self.conf_path),
                      "-e", str(self.error_log)]  # fmt: skip
        if globals_:
            self._base += ["-g", " ".join(globals_)]
        self.argv = list(self._base)

    @staticmethod
    def _complete(config: str) -> str:
        """Wrap an http-block snippet; give a full config private temp paths if it has none."""
        if re.search(r"^\s*events\s*\{", config, re.M):
            if "proxy_temp_path" not in config:
                config = re.sub(
                    r"(^\s*http\s*\{)", r"\1\n" + _TEMP_PATHS, config, count=1, flags=re.M
                )
            return config
        user = "user root;\n" if os.geteuid() == 0 else ""
        return (
            f"{user}worker_processes 1;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "    access_log logs/access.log;\n"
            f"{_TEMP_PATHS}"
            f"{config}\n"
            "}\n"
        )

    def check_config(self) -> None:
        """Run ``nginx -t`` on the config; raise with nginx's output if it is invalid."""
        result = subprocess.run(
            [*self._base, "-t"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise NginxConfigError(
                f"nginx -t failed for {self.conf_path}:\n{result.stderr}{result.stdout}\n"
                f"--- config ---\n{self.config_text}"
            )

    def start(self) -> Self:
        self.check_config()
        return super().start()

    def log_tail(self, max_bytes: int = 4000) -> str:
        """nginx writes almost everything to its error log, so show that too."""
        own = super().log_tail(max_bytes)
        try:
            err = self.error_log.read_bytes()[-max_bytes:].decode(errors="replace")
        except FileNotFoundError:
            err = "(no error.log)"
        return f"{own}\n--- {self.error_log} ---\n{err}"


class ProcessPool:
    """Owns every process a test starts and stops them all, newest first, on :meth:`close`.

    Fixtures use one pool per test; ``close()`` runs at teardown whether the test passed or
    not, and keeps going when one process refuses to stop, so one bad server cannot orphan
    the others.
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.log_dir = Path(log_dir)
        self.processes: list[ManagedProcess] = []

    def add(self, process: ManagedProcess) -> ManagedProcess:
        """Take ownership of an (unstarted or started) process."""
        self.processes.append(process)
        return process

    def start(
        self, make: Callable[[int | None], ManagedProcess], port: int | None = None
    ) -> ManagedProcess:
        """Build with ``make(port)``, start, wait until ready; own the result."""
        return self.add(start_on_free_port(make, port))

    def __iter__(self) -> Iterator[ManagedProcess]:
        return iter(self.processes)

    def close(self) -> None:
        """Stop everything (bounded per process); raise the first error after trying all."""
        errors: list[BaseException] = []
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def log_tails(self) -> str:
        """All logs' tails, for the report of a failed test."""
        return "\n".join(f"=== {p!r} ({p.log_path}) ===\n{p.log_tail()}" for p in self.processes)


def start_on_free_port(
    make: Callable[[int | None], ManagedProcess], port: int | None = None, attempts: int = 3
) -> ManagedProcess:
    """Start ``make(port)`` and wait until ready, retrying on a fresh port if it dies.

    The retry covers the free-port race (another process grabbed the port between
    :func:`free_port` and the server's bind). A port given explicitly is never changed.
    """
    last: Exception | None = None
    for _ in range(1 if port is not None else attempts):
        process = make(port)
        try:
            return process.start().wait_ready()
        except RuntimeError as exc:  # died at start-up: probably lost the port race
            process.stop()
            last = exc
        except BaseException:
            process.stop()
            raise
    assert last is not None
    raise last


def _stop_all_at_exit() -> None:
    """Last resort: stop anything a test or script left running when Python exits."""
    for process in list(_LIVE):
        with contextlib.suppress(Exception):
            process.stop()


atexit.register(_stop_all_at_exit)

__all__ = [
    "APT_PACKAGES",
    "LOOPBACK",
    "ManagedProcess",
    "MemcachedServer",
    "MissingBinaryError",
    "NginxConfigError",
    "NginxServer",
    "ProcessPool",
    "RedisServer",
    "find_binary",
    "free_port",
    "group_pids",
    "install_hint",
    "pid_exists",
    "port_is_open",
    "require_binary",
    "start_on_free_port",
]
