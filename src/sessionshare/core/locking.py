"""Which requests lock their session (MSM ``lockingMode``), decided without I/O.

Locking serializes the requests of one session across nodes, so that two
concurrent increments of the same attribute cannot both read 5 and both write 6.
Modes: ``none``; ``all``; ``uri:<regex>`` (lock when the path matches); ``auto``
(lock unless this method + path has been learned to be read-only).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

__all__ = ["LockPolicy", "ReadOnlyLearner"]


class ReadOnlyLearner:
    """Learns which request patterns never modify the session (bounded LRU).

    A pattern is read-only after ``threshold`` unmodified observations and no
    modifying one. A modifying observation marks it as modifying for good (while it
    stays in the LRU): guessing "read-only" wrongly only costs a lock-free request,
    whose write still merges by version, but flapping would cost many.
    """

    def __init__(self, *, capacity: int = 1000, threshold: int = 2) -> None:
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()  # -1: modifying
        self._capacity = capacity
        self._threshold = threshold
        self._lock = threading.Lock()

    def is_read_only(self, method: str, path: str) -> bool:
        with self._lock:
            count = self._seen.get((method, path), 0)
        return count >= self._threshold

    def observe(self, method: str, path: str, *, modified: bool) -> None:
        pattern = (method, path)
        with self._lock:
            count = self._seen.get(pattern, 0)
            self._seen[pattern] = -1 if modified or count < 0 else count + 1
            self._seen.move_to_end(pattern)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)


class LockPolicy:
    """Answers "does this request lock its session?" for one ``locking`` mode."""

    def __init__(self, mode: str, *, enabled: bool = True) -> None:
        self.mode = mode if enabled else "none"
        self._uri = re.compile(mode[4:]) if mode.startswith("uri:") else None
        self.learner = ReadOnlyLearner() if self.mode == "auto" else None

    def needs_lock(self, method: str, path: str) -> bool:
        if self.mode == "none":
            return False
        if self._uri is not None:
            return self._uri.search(path) is not None
        if self.learner is not None:
            return not self.learner.is_read_only(method, path)
        return True  # "all"

    def observe(self, method: str, path: str, *, modified: bool) -> None:
        if self.learner is not None:
            self.learner.observe(method, path, modified=modified)

    def __repr__(self) -> str:
        learned = f", {len(self.learner)} patterns" if self.learner is not None else ""
        return f"<LockPolicy {self.mode}{learned}>"
