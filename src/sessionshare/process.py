"""This process's id, read without a system call, kept current across ``fork``.

Several parts start per-process resources lazily (a replication member, a prober or
lock-renewal thread, pooled sockets) because gunicorn forks its workers after
building the app, and they check on every request whether they are still in the
process that started them. ``os.getpid()`` is a real system call on current glibc
(it stopped caching the value in 2.25), so these checks read this copy instead,
which ``os.register_at_fork`` refreshes in every child.
"""

from __future__ import annotations

import os

__all__ = ["current_pid"]

_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def current_pid() -> int:
    """``os.getpid()``, without asking the kernel."""
    return _pid
