"""What happened in the cluster, newest last: the dashboard's "recent events" and ``up``'s log.

A bounded ring (the dashboard shows the last ones; a long-running cluster must not grow
without limit) with listeners, so ``up`` prints each event as it happens.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Event", "EventLog"]

log = logging.getLogger("sessionshare.cluster")

#: kinds that mean something went wrong; the dashboard shows them in red.
BAD_KINDS = frozenset({"down", "unhealthy", "failover", "failed"})


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened: ``kind`` (down, up, restarting, relocation, failover…)."""

    time: float
    kind: str
    subject: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bad": self.kind in BAD_KINDS}


class EventLog:
    """The last ``size`` events; ``listen`` adds a callback run for every new one."""

    def __init__(self, size: int = 200, clock: Callable[[], float] = time.time) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self._listeners: list[Callable[[Event], None]] = []
        self._clock = clock

    def add(self, kind: str, subject: str, message: str) -> Event:
        event = Event(self._clock(), kind, subject, message)
        self._events.append(event)
        # Debug only: ``up`` prints events itself, a library user may turn this on.
        log.debug("%s %s: %s", kind, subject, message)
        for listener in self._listeners:
            listener(event)
        return event

    def listen(self, callback: Callable[[Event], None]) -> None:
        self._listeners.append(callback)

    def recent(self, count: int = 50) -> list[dict[str, Any]]:
        """The last ``count`` events, oldest first, as JSON-ready dicts."""
        return [event.as_dict() for event in list(self._events)[-count:]]

    def __len__(self) -> int:
        return len(self._events)

    def __repr__(self) -> str:
        last = self._events[-1] if self._events else None
        return f"<EventLog {len(self._events)} events, last={last and last.message!r}>"
