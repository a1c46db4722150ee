"""Turning session attributes into bytes and back.

JSON is the default because it cannot execute code when read back and every
language can read it. msgpack is the compact, faster option. pickle handles any
Python object but unpickling attacker-controlled bytes runs code, so it is only
available signed: an HMAC-SHA256 over the payload, checked in constant time
*before* ``pickle.loads`` ever sees the bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import pickle
from typing import Any, Protocol

import msgpack

from sessionshare.errors import ConfigError, SerializationError, SignatureError

__all__ = [
    "JsonSerializer",
    "MsgpackSerializer",
    "Serializer",
    "SignedPickleSerializer",
    "make_serializer",
]


class Serializer(Protocol):
    """What the session core needs: bytes out, the same value back."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """Compact UTF-8 JSON. Tuples come back as lists, as with any JSON store."""

    def dumps(self, value: Any) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"session value is not JSON-serializable ({exc}); store plain data, or "
                "choose serializer = 'msgpack' or a signed 'pickle'"
            ) from None

    def loads(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SerializationError(f"stored bytes are not valid JSON: {exc}") from None


class MsgpackSerializer:
    """msgpack: smaller and faster than JSON, still data-only."""

    def dumps(self, value: Any) -> bytes:
        try:
            return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"session value is not msgpack-serializable: {exc}") from None

    def loads(self, data: bytes) -> Any:
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise SerializationError(f"stored bytes are not valid msgpack: {exc}") from None


class SignedPickleSerializer:
    """pickle behind an HMAC-SHA256 signature: ``signature (32 bytes) || pickle``."""

    _DIGEST_SIZE = 32

    def __init__(self, secret: str | bytes) -> None:
        if not secret:
            raise ConfigError("serializer: 'pickle' needs a non-empty 'secret'")
        self._key = secret.encode() if isinstance(secret, str) else secret

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def dumps(self, value: Any) -> bytes:
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializationError(f"session value cannot be pickled: {exc}") from None
        return self._sign(payload) + payload

    def loads(self, data: bytes) -> Any:
        signature, payload = data[: self._DIGEST_SIZE], data[self._DIGEST_SIZE :]
        if len(signature) != self._DIGEST_SIZE or not hmac.compare_digest(
            signature, self._sign(payload)
        ):
            raise SignatureError("pickled session failed HMAC verification; not unpickled")
        try:
            return pickle.loads(payload)
        except Exception as exc:  # a signed but broken payload: still a miss, not a crash
            raise SerializationError(f"signed pickle could not be loaded: {exc}") from None


def make_serializer(name: str, secret: str | None = None) -> Serializer:
    """The serializer for option ``serializer``: a built-in name or a dotted class path.

    A dotted path names a class with ``dumps``/``loads``; it is called with
    ``secret=...`` when a secret is configured and the class accepts it.
    """
    if name == "json":
        return JsonSerializer()
    if name == "msgpack":
        return MsgpackSerializer()
    if name == "pickle":
        if not secret:
            raise ConfigError("serializer: 'pickle' needs a 'secret'")
        return SignedPickleSerializer(secret)
    module_name, _, class_name = name.rpartition(".")
    if not module_name:
        raise ConfigError(
            f"serializer: expected json, msgpack, pickle or a dotted class path, got {name!r}"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"serializer: cannot import {name!r}: {exc}") from None
    try:
        instance = cls(secret=secret) if secret else cls()
    except TypeError:
        instance = cls()
    if not all(callable(getattr(instance, method, None)) for method in ("dumps", "loads")):
        raise ConfigError(f"serializer: {name!r} has no dumps()/loads() methods")
    return instance  # type: ignore[no-any-return]
