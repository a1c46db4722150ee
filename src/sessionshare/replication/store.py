"""The peer stores as the session protocol sees them: ``Store`` and ``AsyncStore`` faces
of one ``ReplicationNode``.

The node is started lazily, in the process that serves requests, on first use or
on the first readiness check (``ready()``, which the demo's ``/healthz`` calls):
the ``sessionshare node`` command builds a store once just to validate options,
and gunicorn loads the app in each worker after forking, so nothing may bind a
port at construction. Under an ASGI server the node runs on the server's own
event loop (no thread hop per operation); under a WSGI server it runs on a
background thread with its own loop, and request threads read the table directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any

from sessionshare.config import SessionConfig
from sessionshare.core.operations import Get, Record
from sessionshare.errors import ConfigError, StoreError, StoreTimeout, StoreUnavailable
from sessionshare.process import current_pid
from sessionshare.replication.membership import parse_members
from sessionshare.replication.messages import Op
from sessionshare.replication.node import ATTEMPTS, REMOTE, ReplicationNode
from sessionshare.stores.base import AsyncOperationStore, OperationStore, StoreOp

__all__ = ["AsyncPeerStore", "PeerStore", "build_node"]

#: how long a node started on a background thread may take to bind its port.
START_TIMEOUT = 10.0


def build_node(config: SessionConfig, *, copies: int | None, kind: str) -> ReplicationNode:
    """A member for ``config``; ``ConfigError`` names what is missing."""
    if not config.members:
        raise ConfigError(
            f"store = '{kind}' needs 'members', every member of the cluster with its "
            "replication port, e.g. members = ['node1=127.0.0.1:4001', 'node2=127.0.0.1:4002']"
        )
    if not config.secret:
        raise ConfigError(
            f"store = '{kind}' needs a 'secret' shared by all members: replication frames "
            "are HMAC-signed with it, and frames that fail the check are dropped"
        )
    members = parse_members(config.members)
    name = config.member_name or config.route
    if name is None:
        raise ConfigError(f"store = '{kind}' needs 'member_name' (or 'route'): which member it is")
    return ReplicationNode(
        members=members,
        member_name=name,
        secret=config.secret,
        copies=copies,
        max_sessions=config.max_sessions,
        sync_acks=not config.replication_async,
        operation_timeout=config.operation_timeout,
        join_timeout=config.join_timeout,
        kind=kind,
        route=config.route,
    )


class _LoopThread:
    """A daemon thread running the node's own event loop (for WSGI servers)."""

    def __init__(self, node: ReplicationNode) -> None:
        self.node = node
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"sessionshare-{node.name}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            raise StoreUnavailable(f"member {node.name} did not start within {START_TIMEOUT}s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.node.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise StoreTimeout(f"replication did not answer within {timeout:.1f}s") from None

    def stop(self) -> None:
        try:
            self.call(self.node.close(), 2.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(2.0)


class _Member:
    """What both faces share: the node, its options, readiness and status."""

    kind = "replicated"
    copies: int | None = None

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.node = build_node(config, copies=self.copies, kind=self.kind)
        #: the longest one call may take: every attempt may meet a dead owner first.
        self.deadline = ATTEMPTS * (config.operation_timeout + 0.5) + 1.0
        self._pid: int | None = None
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node!r}>"

    def ready(self) -> bool:
        """True once this member received the current sessions (``/healthz`` says 200)."""
        self._ensure()
        return self.node.synced.is_set()

    def _ensure(self) -> None:
        if self._pid != current_pid():
            with self._guard:
                if self._pid != current_pid():
                    self._start()
                    self._pid = current_pid()

    def _start(self) -> None:
        raise NotImplementedError

    def preferred_route(self, key: str) -> str | None:
        """The route of the node whose member owns ``key`` (``ReplicationNode.owner_route``)."""
        if self._pid != current_pid() or not self.node.has_synced:
            return None
        return self.node.owner_route(key)

    def stats(self) -> dict[str, Any]:
        return self.node.stats()


def _answer(results: list[Any]) -> Any:
    result = results[0]
    if isinstance(result, StoreError):
        raise result
    return result


class PeerStore(_Member, OperationStore):
    """The blocking face, for WSGI servers."""

    _thread: _LoopThread | None = None

    def _start(self) -> None:
        self._thread = _LoopThread(self.node)

    def _run(self, ops: Sequence[Op]) -> list[Any]:
        self._ensure()
        assert self._thread is not None
        return self._thread.call(self.node.execute(ops), self.deadline)  # type: ignore[no-any-return]

    def get(
        self, key: str, *, node: str | None = None, touch: float | None = None
    ) -> Record | None:
        self._ensure()
        local = self.node.read_local(key, touch)
        if local is not REMOTE:
            return local  # type: ignore[no-any-return]
        return self.execute(Get(key=key, touch=touch))  # type: ignore[no-any-return]

    def execute(self, op: StoreOp) -> Any:
        return _answer(self._run([op]))

    def batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        try:
            return self._run(list(ops))
        except StoreError as exc:
            return [exc] * len(ops)

    def close(self) -> None:
        if self._thread is not None and self._pid == current_pid():
            self._thread.stop()
            self._thread = None
            self._pid = None


class AsyncPeerStore(_Member, AsyncOperationStore):
    """The async face, for ASGI servers: the node lives on the server's loop."""

    _thread: _LoopThread | None = None
    _task: asyncio.Task[None] | None = None

    def __init__(self, config: SessionConfig) -> None:
        super().__init__(config)
        try:  # uvicorn builds the app inside its running loop: join the cluster now
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._ensure()

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop here (built at import time): run one of our own
            self._thread = _LoopThread(self.node)
            return
        self._task = loop.create_task(self.node.start())
        # start() logs its own failure; retrieve it so asyncio does not warn again.
        self._task.add_done_callback(lambda task: task.cancelled() or task.exception())

    def _run(self, ops: Sequence[Op]) -> Awaitable[list[Any]]:
        """The answers of ``ops``: awaitable, and no coroutine of its own in the usual
        case (the node on this loop), as this is on the path of every request."""
        self._ensure()
        if self._thread is None:
            return self.node.execute(ops)
        return self._run_on_thread(ops)

    async def _run_on_thread(self, ops: Sequence[Op]) -> list[Any]:
        assert self._thread is not None
        future = asyncio.run_coroutine_threadsafe(self.node.execute(ops), self._thread.loop)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.deadline)
        except TimeoutError:
            raise StoreTimeout(f"replication did not answer within {self.deadline:.1f}s") from None

    async def get(
        self, key: str, *, node: str | None = None, touch: float | None = None
    ) -> Record | None:
        self._ensure()
        local = self.node.read_local(key, touch)
        if local is not REMOTE:
            return local  # type: ignore[no-any-return]
        return await self.execute(Get(key=key, touch=touch))  # type: ignore[no-any-return]

    async def execute(self, op: StoreOp) -> Any:
        return _answer(await self._run([op]))

    async def batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        try:
            return await self._run(ops)  # type: ignore[arg-type]
        except StoreError as exc:
            return [exc] * len(ops)

    async def aclose(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        elif self._task is not None:
            await self.node.close()
        self._pid = None
