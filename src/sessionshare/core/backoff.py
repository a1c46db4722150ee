"""Bounded exponential back-off with jitter, as a small value object (redis-py style)."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["ExponentialBackoff"]


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """``base * 2**attempt`` capped at ``cap``, with "equal jitter".

    Jitter keeps several waiters for one lock from retrying in lock-step; the cap
    keeps a waiter responsive once the holder lets go.
    """

    base: float = 0.005  # seconds: about one store round trip
    cap: float = 0.1

    def compute(self, attempt: int) -> float:
        delay: float = min(self.cap, self.base * 2.0 ** min(attempt, 16))
        return delay / 2 + random.uniform(0, delay / 2)
