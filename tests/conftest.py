"""Shared pytest fixtures: real memcached / redis / nginx / app-node processes, and the CI guard.

Every fixture here is function-scoped and owned by one :class:`~tests.servers.ProcessPool`, so
each test starts from clean servers (no data leaking between tests) and every process is
stopped by pid at teardown, whether the test passed, failed or errored.

Under ``CI=true`` nothing may skip: a missing server binary fails the test with the
``apt-get install`` line, and the guard below turns any other skip into a failure, because a
skipped failover test in CI is a failover test that silently stopped running.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from tests.servers import (
    ManagedProcess,
    MemcachedServer,
    NginxServer,
    ProcessPool,
    RedisServer,
    _stop_all_at_exit,
    free_port,
    in_ci,
    require_binary,
)

_POOL_KEY = pytest.StashKey[ProcessPool]()


# -- CI guard --------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Turn skips into failures under CI=true, and attach server logs to failed tests."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which forbids skips: {reason}"
    if report.failed:
        pool = item.stash.get(_POOL_KEY, None)
        if pool is not None and pool.processes:
            report.sections.append(("server logs", pool.log_tails()))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, None]:
    """Same guard for module-level skips (``pytest.importorskip``, ``allow_module_level``)."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()  # type: ignore[attr-defined]
    if in_ci() and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"module skipped under CI=true, which forbids skips: {reason}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Belt and braces: stop any ManagedProcess a test started outside a fixture."""
    _stop_all_at_exit()


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def server_pool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessPool]:
    """The per-test owner of all processes; logs live in ``<tmp_path>/servers``."""
    pool = ProcessPool(tmp_path / "servers")
    request.node.stash[_POOL_KEY] = pool
    try:
        yield pool
    finally:
        pool.close()


class ProcessFactory(Protocol):
    """Signature of :func:`process_factory`."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        port: int | None = None,
        name: str | None = None,
        ready_path: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 15.0,
    ) -> ManagedProcess: ...


@pytest.fixture
def process_factory(server_pool: ProcessPool) -> ProcessFactory:
    """Start any command (an app node, a helper HTTP server) and wait until it is ready.

    ``{port}`` in ``argv`` is replaced by ``port`` or by a free port; ``ready_path`` (e.g.
    ``"/healthz"``) waits for HTTP 2xx instead of a bare TCP accept. Example::

        node = process_factory(["sessionshare", "node", "--port", "{port}"],
                               name="node1", ready_path="/healthz")
    """

    def make(
        argv: Sequence[str],
        *,
        port: int | None = None,
        name: str | None = None,
        ready_path: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 15.0,
    ) -> ManagedProcess:
        def build(p: int | None) -> ManagedProcess:
            return ManagedProcess(
                argv,
                p,
                name=name,
                log_dir=server_pool.log_dir,
                env=env,
                cwd=cwd,
                ready_path=ready_path,
                ready_timeout=timeout,
            )

        return server_pool.start(build, port)

    return make


ServerT = TypeVar("ServerT", MemcachedServer, RedisServer)


def _start_numbered(
    pool: ProcessPool, cls: type[ServerT], binary: str, count: int, **options: Any
) -> list[ServerT]:
    """Start ``count`` servers of ``cls`` on free ports, named memcached1, memcached2 … in the
    order this test started them (the names appear in logs and failure reports)."""
    require_binary(binary)
    prefix = cls.__name__.removesuffix("Server").lower()
    servers: list[ServerT] = []
    for _ in range(count):
        name = f"{prefix}{sum(isinstance(x, cls) for x in pool) + 1}"

        def build(port: int | None, name: str = name) -> ServerT:
            return cls(port, log_dir=pool.log_dir, name=name, **options)

        server = pool.start(build)
        assert isinstance(server, cls)
        servers.append(server)
    return servers


class MemcachedFactory(Protocol):
    """Signature of :func:`memcached_factory`."""

    def __call__(
        self, count: int = 1, *, memory_mb: int = 64, extra_args: Sequence[str] = ()
    ) -> list[MemcachedServer]: ...


@pytest.fixture
def memcached_factory(server_pool: ProcessPool) -> MemcachedFactory:
    """Start ``count`` memcached servers on free ports; all stopped at teardown."""

    def make(
        count: int = 1, *, memory_mb: int = 64, extra_args: Sequence[str] = ()
    ) -> list[MemcachedServer]:
        return _start_numbered(server_pool, MemcachedServer, "memcached", count,
                               memory_mb=memory_mb, extra_args=extra_args)  # fmt: skip

    return make


@pytest.fixture
def memcached_server(memcached_factory: MemcachedFactory) -> MemcachedServer:
    """One fresh memcached server."""
    return memcached_factory(1)[0]


class RedisFactory(Protocol):
    """Signature of :func:`redis_factory`."""

    def __call__(self, count: int = 1, *, extra_args: Sequence[str] = ()) -> list[RedisServer]: ...


@pytest.fixture
def redis_factory(server_pool: ProcessPool) -> RedisFactory:
    """Start ``count`` redis servers (persistence off) on free ports."""

    def make(count: int = 1, *, extra_args: Sequence[str] = ()) -> list[RedisServer]:
        return _start_numbered(server_pool, RedisServer, "redis-server", count,
                               extra_args=extra_args)  # fmt: skip

    return make


@pytest.fixture
def redis_server(redis_factory: RedisFactory) -> RedisServer:
    """One fresh redis server."""
    return redis_factory(1)[0]


class NginxFactory(Protocol):
    """Signature of :func:`nginx_factory`."""

    def __call__(
        self, config: str | Callable[[int], str], port: int | None = None
    ) -> NginxServer: ...


_LISTEN_RE = re.compile(r"(?:^|[{;\s])listen\s+(?:[\w.\[\]:]+:)?(\d+)\b")


@pytest.fixture
def nginx_factory(server_pool: ProcessPool) -> NginxFactory:
    """Start nginx from a config (full ``nginx.conf`` or the inside of ``http {}``).

    ``config`` may be a function of the port (``lambda port: f"server {{ listen
    127.0.0.1:{port}; ... }}"``), in which case a free port is chosen (and re-chosen if lost
    to a race); a plain string must contain its ``listen`` port, or pass ``port``.
    """

    def make(config: str | Callable[[int], str], port: int | None = None) -> NginxServer:
        require_binary("nginx", "nginx-light")
        if isinstance(config, str) and port is None:
            match = _LISTEN_RE.search(config)
            if match is None:
                raise ValueError("nginx config has no `listen <port>`; pass port=")
            port = int(match.group(1))

        def build(p: int | None) -> NginxServer:
            real_port = p if p is not None else free_port()
            text = config(real_port) if callable(config) else config
            return NginxServer(text, real_port, log_dir=server_pool.log_dir)

        server = server_pool.start(build, port)
        assert isinstance(server, NginxServer)
        return server

    return make
