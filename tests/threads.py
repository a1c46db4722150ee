"""Threads in tests that cannot fail silently.

A ``threading.Thread`` swallows its target's exception (an ``assert`` inside a client
thread is lost), and ``join(timeout)`` returns quietly when the thread is still running.
Both let a load test pass while its clients failed or hung. These helpers re-raise the
first exception in the test's own thread and fail when a thread outlives its deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

__all__ = ["Background", "in_background", "run_in_threads"]

T = TypeVar("T")


class Background(Generic[T]):
    """One call running in a thread: its result or its exception, once joined."""

    def __init__(self, call: Callable[[], T], name: str | None = None) -> None:
        self._call = call
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._result = self._call()
        except BaseException as exc:  # re-raised by join(), in the test's thread
            self._error = exc

    def start(self) -> Background[T]:
        self._thread.start()
        return self

    def join(self, deadline: float) -> T:
        """Wait until ``deadline`` (monotonic); raise what the call raised, or fail if it
        is still running."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            raise AssertionError(f"thread {self._thread.name} still running at its deadline")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


def run_in_threads(calls: list[Callable[[], T]], *, timeout: float) -> list[T]:
    """Run every call in its own thread; their results in order, or the first failure."""
    workers = [Background(call, name=f"worker-{i}").start() for i, call in enumerate(calls)]
    deadline = time.monotonic() + timeout
    return [worker.join(deadline) for worker in workers]


@contextmanager
def in_background(call: Callable[[], Any], *, timeout: float) -> Iterator[Background[Any]]:
    """``with in_background(hold, timeout=30):`` runs ``hold`` while the block runs, then
    joins it: an exception in ``hold``, or ``hold`` still running, fails the test."""
    worker = Background(call, name="background").start()
    deadline = time.monotonic() + timeout
    yield worker
    worker.join(deadline)
