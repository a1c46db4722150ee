"""Smoke tests for the test infrastructure itself.

They prove that CI can start each real server, that the failure drills (kill, restart on the
same port, pause) do what later failover tests rely on, and that teardown leaves no process
behind. If one of these fails, every store and balancer test after it is suspect.
"""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from pymemcache.client.base import Client as MemcacheClient

from tests.conftest import MemcachedFactory, NginxFactory, ProcessFactory
from tests.servers import (
    ManagedProcess,
    MemcachedServer,
    NginxConfigError,
    NginxServer,
    ProcessPool,
    RedisServer,
    free_port,
    group_pids,
    pid_exists,
    port_is_open,
    require_binary,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def memcache_client(server: MemcachedServer, timeout: float = 2.0) -> MemcacheClient:
    """A client that answers in microseconds: with pymemcache defaults (noreply sets, Nagle on)
    a get right after a set stalls ~40 ms on delayed ACKs."""
    return MemcacheClient(
        server.addr,
        no_delay=True,
        default_noreply=False,
        connect_timeout=timeout,
        timeout=timeout,
    )


def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET on loopback with http.client (never through an env-configured proxy)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.servers
def test_memcached_set_get(memcached_server: MemcachedServer) -> None:
    client = memcache_client(memcached_server)
    key, value = f"k-{secrets.token_hex(4)}", secrets.token_bytes(16)
    assert client.get(key) is None
    assert client.set(key, value) is True
    assert client.get(key) == value
    started = time.monotonic()
    for _ in range(20):
        client.set(key, value)
        assert client.get(key) == value
    # 20 round trips: far below the 20 * 40 ms a Nagle/delayed-ACK stall would cost.
    assert time.monotonic() - started < 0.5
    client.close()


@pytest.mark.servers
def test_memcached_factory_gives_independent_servers(memcached_factory: MemcachedFactory) -> None:
    first, second = memcached_factory(2)
    assert first.port != second.port
    assert first.pid != second.pid
    a, b = memcache_client(first), memcache_client(second)
    a.set("shared-key", b"on-first")
    assert a.get("shared-key") == b"on-first"
    assert b.get("shared-key") is None  # separate processes, separate data
    a.close()
    b.close()


@pytest.mark.servers
def test_redis_set_get(redis_server: RedisServer) -> None:
    client = redis.Redis(host=redis_server.host, port=redis_server.port, socket_timeout=2)
    assert client.ping() is True
    key, value = f"k-{secrets.token_hex(4)}", secrets.token_bytes(16)
    assert client.get(key) is None
    assert client.set(key, value) is True
    assert client.get(key) == value
    assert redis.Redis.from_url(redis_server.redis_url, socket_timeout=2).get(key) == value
    client.close()


@pytest.mark.servers
def test_nginx_proxies_to_python_http_server(
    nginx_factory: NginxFactory, process_factory: ProcessFactory, tmp_path: Path
) -> None:
    token = secrets.token_hex(8)
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "hello.txt").write_text(token)
    backend = process_factory(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(docroot),
         "{port}"],
        name="backend",
        ready_path="/hello.txt",
    )  # fmt: skip
    nginx = nginx_factory(
        lambda port: (
            f"""
        server {{
            listen 127.0.0.1:{port};
            location / {{ proxy_pass http://127.0.0.1:{backend.port}; }}
        }}
        """
        )
    )
    assert nginx.port != backend.port
    status, headers, body = http_get(nginx.port, "/hello.txt")
    assert status == 200
    assert body.decode() == token
    # proxy_pass hides the upstream's Server header: this really went through nginx.
    assert headers["Server"].startswith("nginx")
    assert http_get(nginx.port, "/missing.txt")[0] == 404
    # nginx kept its files in its own prefix, not in /var/log or /run.
    assert (nginx.prefix / "logs" / "nginx.pid").read_text().strip() == str(nginx.pid)
    assert "hello.txt" in (nginx.prefix / "logs" / "access.log").read_text()


@pytest.mark.servers
def test_nginx_bad_config_fails_with_nginx_message(nginx_factory: NginxFactory) -> None:
    with pytest.raises(NginxConfigError, match=r"(?s)nginx -t failed.*no_such_directive"):
        nginx_factory("server { listen 127.0.0.1:1; no_such_directive on; }")


@pytest.mark.servers
def test_memcached_kill_then_restart_on_same_port(memcached_server: MemcachedServer) -> None:
    client = memcache_client(memcached_server, timeout=1)
    client.set("survivor", b"1")
    old_pid, port = memcached_server.pid, memcached_server.port
    assert old_pid is not None

    memcached_server.kill()
    assert not pid_exists(old_pid)
    assert not port_is_open("127.0.0.1", port)
    assert "killed" in repr(memcached_server)
    client.close()

    memcached_server.restart()
    assert memcached_server.port == port
    assert memcached_server.pid != old_pid
    assert "running" in repr(memcached_server)
    client = memcache_client(memcached_server, timeout=1)
    assert client.get("survivor") is None  # a killed memcached loses its data
    client.set("after", b"2")
    assert client.get("after") == b"2"
    client.close()


@pytest.mark.servers
def test_pause_makes_server_hang_and_resume_recovers(memcached_server: MemcachedServer) -> None:
    client = memcache_client(memcached_server, timeout=0.5)
    client.set("k", b"v")
    memcached_server.pause()
    assert "paused" in repr(memcached_server)
    with pytest.raises(socket.timeout):
        client.get("k")
    client.close()
    memcached_server.resume()
    client = memcache_client(memcached_server, timeout=2)
    assert client.get("k") == b"v"  # paused, not dead: data kept
    client.close()


@pytest.mark.servers
def test_pool_close_leaves_no_process(tmp_path: Path) -> None:
    """What every fixture teardown does, checked by pid, including nginx's worker processes."""
    for binary in ("memcached", "redis-server", "nginx"):
        require_binary(binary)
    pool = ProcessPool(tmp_path)
    memcached = pool.start(lambda p: MemcachedServer(p, log_dir=tmp_path))
    redis_proc = pool.start(lambda p: RedisServer(p, log_dir=tmp_path))

    def make_nginx(p: int | None) -> NginxServer:
        port = p if p is not None else free_port()
        config = f"server {{ listen 127.0.0.1:{port}; return 204; }}"
        return NginxServer(config, port, log_dir=tmp_path)

    nginx = pool.start(make_nginx)
    paused = pool.start(
        lambda p: ManagedProcess([sys.executable, "-m", "http.server", "-b", "127.0.0.1", "{port}"],
                                 p, log_dir=tmp_path)
    )  # fmt: skip
    paused.pause()  # a stopped process must still be stopped by teardown
    assert http_get(nginx.port, "/")[0] == 204
    nginx_group = group_pids(nginx.pid or 0)
    assert len(nginx_group) >= 2, "expected nginx master and at least one worker"
    pids = [p.pid for p in (memcached, redis_proc, paused)] + nginx_group

    pool.close()

    assert [pid for pid in pids if pid is not None and pid_exists(pid)] == []
    assert group_pids(nginx_group[0]) == []
    for process in pool:
        assert not process.running
        assert not port_is_open("127.0.0.1", process.port)


def test_context_manager_stops_on_exception(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "http.server", "-b", "127.0.0.1", "{port}"]
    process = ManagedProcess(argv, log_dir=tmp_path, ready_path="/")
    assert "not started" in repr(process)
    with pytest.raises(KeyError), process:
        assert process.running
        raise KeyError("boom")
    assert process.pid is not None
    assert not pid_exists(process.pid)
    assert "stopped" in repr(process)


def test_wait_ready_reports_early_exit_with_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('config is broken'); sys.exit(3)"]
    process = ManagedProcess(argv, log_dir=tmp_path, name="crasher")
    process.start()
    with pytest.raises(RuntimeError, match=r"exited with 3[\s\S]*config is broken"):
        process.wait_ready(timeout=10)
    assert "exited on its own (rc=3)" in repr(process)
    process.stop()


def test_wait_ready_is_bounded(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    process = ManagedProcess(argv, log_dir=tmp_path, name="sleeper")
    process.start()
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match="not ready"):
            process.wait_ready(timeout=0.5)
        assert time.monotonic() - started < 3
    finally:
        process.stop()
    assert process.pid is not None and not pid_exists(process.pid)


def test_missing_binary_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install no-such-pkg"):
        require_binary("sessionshare-no-such-binary", "no-such-pkg")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install no-such-pkg"):
        require_binary("sessionshare-no-such-binary", "no-such-pkg")


def test_ci_guard_turns_skips_into_failures(tmp_path: Path) -> None:
    """Run a tiny suite with our conftest as a plugin: skips pass locally, fail under CI."""
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\ndef test_skipped():\n    pytest.skip('not today')\n"
    )
    (tmp_path / "test_module_skip.py").write_text(
        "import pytest\n\npytest.importorskip('sessionshare_no_such_module')\n"
    )

    def run(ci: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        env["PYTHONPATH"] = str(REPO_ROOT)
        if ci is not None:
            env["CI"] = ci
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
             "-q", "-rA", "--continue-on-collection-errors", str(tmp_path)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    local = run(None)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "2 skipped" in local.stdout

    ci = run("true")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "skipped under CI=true" in ci.stdout
    assert "not today" in ci.stdout
    assert "module skipped under CI=true" in ci.stdout


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    process = ManagedProcess([sys.executable, "-c", code], log_dir=tmp_path, name="stubborn")
    process.stop_timeout = 0.5
    process.start()
    time.sleep(0.3)  # let it install the handler
    started = time.monotonic()
    process.stop()
    assert time.monotonic() - started < 3
    assert process.returncode == -9
    assert process.pid is not None and not pid_exists(process.pid)
