"""The two drivers of the sans-IO session protocol: one blocking, one async.

``core/manager.py`` yields operations; these loops answer them from a store and
send the answer back, exactly like httpcore's loop around h11 (``next_event`` /
``receive_data``). A store error is thrown *into* the protocol, so the protocol
decides what it means (a failed unlock is logged, a failed read is a 503 …).
They are the only place where the sync and async worlds differ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import Any

from sessionshare.core.operations import Operation, Sleep
from sessionshare.errors import StoreError
from sessionshare.stores.base import AsyncStore, Store

__all__ = ["run_async", "run_sync"]


def run_sync(steps: Generator[Operation, Any, Any], store: Store) -> Any:
    """Drive ``steps`` to completion with blocking store calls; return its result."""
    answer: Any = None
    error: StoreError | None = None
    while True:
        try:
            op = steps.throw(error) if error is not None else steps.send(answer)
        except StopIteration as done:
            return done.value
        answer, error = None, None
        try:
            if isinstance(op, Sleep):
                time.sleep(op.seconds)
            else:
                answer = op.apply(store)
        except StoreError as exc:
            error = exc


async def run_async(steps: Generator[Operation, Any, Any], store: AsyncStore) -> Any:
    """Drive ``steps`` to completion with awaited store calls; return its result."""
    answer: Any = None
    error: StoreError | None = None
    while True:
        try:
            op = steps.throw(error) if error is not None else steps.send(answer)
        except StopIteration as done:
            return done.value
        answer, error = None, None
        try:
            if isinstance(op, Sleep):
                await asyncio.sleep(op.seconds)
            else:
                answer = await op.apply(store)
        except StoreError as exc:
            error = exc
