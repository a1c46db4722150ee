"""Reading the session cookie from a ``Cookie`` header and writing ``Set-Cookie``.

Hand-written on purpose: ``http.cookies.SimpleCookie`` drops *every* cookie of a
header when one of them is malformed (CPython issue 71775), which would let any
unrelated bad cookie reset a user's session. We only need one name, so a split
on ``;`` is both simpler and more forgiving.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessionshare.config import SessionConfig

__all__ = ["CookieSpec", "read_cookie_values"]


def read_cookie_values(header: str | None, name: str) -> list[str]:
    """Every value sent for cookie ``name``, in header order (paths can make duplicates)."""
    if not header:
        return []
    values = []
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            values.append(value.strip().strip('"'))
    return values


@dataclass(frozen=True, slots=True)
class CookieSpec:
    """The cookie's attributes, computed once per manager (Starlette does the same)."""

    name: str
    attributes: str
    secure: bool | None  # None: decided per request from the scheme

    @classmethod
    def from_config(cls, config: SessionConfig) -> CookieSpec:
        parts = [f"Path={config.cookie_path}"]
        if config.cookie_domain:
            parts.append(f"Domain={config.cookie_domain}")
        if config.cookie_httponly:
            parts.append("HttpOnly")
        parts.append(f"SameSite={config.cookie_samesite}")
        if config.cookie_partitioned:
            parts.append("Partitioned")
        return cls(config.cookie_name, "; ".join(parts), config.cookie_secure)

    def _flags(self, scheme: str) -> str:
        secure = self.secure if self.secure is not None else scheme == "https"
        return f"{self.attributes}; Secure" if secure else self.attributes

    def set(self, value: str, scheme: str, max_age: float | None = None) -> str:
        """A browser-session cookie (no Max-Age: the store's TTL bounds its life, as in
        Tomcat), or with ``max_age`` one that outlives the browser (a "remember me")."""
        if max_age is None:
            return f"{self.name}={value}; {self._flags(scheme)}"
        return f"{self.name}={value}; Max-Age={int(max_age)}; {self._flags(scheme)}"

    def expire(self, scheme: str) -> str:
        """Tell the browser to forget the cookie (logout, invalidation)."""
        gone = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        return f"{self.name}=; {gone}; {self._flags(scheme)}"
