"""The example's user list: in memory, as the contract says (a real app has a database)."""

from __future__ import annotations

import hmac

__all__ = ["check_password"]

_PASSWORDS = {"alice": "wonderland", "bob": "builder"}


def check_password(username: str, password: str) -> bool:
    """True for a known user with the right password (compared in constant time)."""
    expected = _PASSWORDS.get(username)
    return expected is not None and hmac.compare_digest(expected, password)
