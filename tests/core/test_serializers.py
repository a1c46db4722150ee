"""Serializers: round trips, the signed pickle, and the errors users see."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from sessionshare.core.serializers import (
    JsonSerializer,
    MsgpackSerializer,
    SignedPickleSerializer,
    make_serializer,
)
from sessionshare.errors import ConfigError, SerializationError, SignatureError

SAMPLE: dict[str, Any] = {
    "count": 3,
    "user": {"name": "Zoë", "roles": ["a", "b"]},
    "x": 1.5,
    "none": None,
    "flag": True,
}


@pytest.mark.parametrize("name", ["json", "msgpack", "pickle"])
def test_round_trip(name: str) -> None:
    serializer = make_serializer(name, secret="s3cret")
    assert serializer.loads(serializer.dumps(SAMPLE)) == SAMPLE


def test_pickle_round_trips_python_objects() -> None:
    serializer = SignedPickleSerializer("s3cret")
    value = {"when": {1, 2, 3}, "pair": (1, 2)}
    assert serializer.loads(serializer.dumps(value)) == value


def test_pickle_needs_a_secret() -> None:
    with pytest.raises(ConfigError, match="secret"):
        make_serializer("pickle")


@pytest.mark.parametrize("position", [0, 31, 32, -1])
def test_tampered_pickle_is_never_unpickled(position: int) -> None:
    serializer = SignedPickleSerializer("s3cret")
    data = bytearray(serializer.dumps(SAMPLE))
    data[position] ^= 0x01
    with pytest.raises(SignatureError):
        serializer.loads(bytes(data))


def test_pickle_signed_with_another_secret_is_rejected() -> None:
    forged = SignedPickleSerializer("attacker").dumps(SAMPLE)
    with pytest.raises(SignatureError):
        SignedPickleSerializer("s3cret").loads(forged)


def test_unsigned_pickle_is_rejected() -> None:
    with pytest.raises(SignatureError):
        SignedPickleSerializer("s3cret").loads(pickle.dumps(SAMPLE))


def test_json_refuses_non_json_values_with_a_hint() -> None:
    with pytest.raises(SerializationError, match="msgpack"):
        JsonSerializer().dumps({"s": {1, 2}})


@pytest.mark.parametrize("serializer", [JsonSerializer(), MsgpackSerializer()])
def test_garbage_bytes_raise_serialization_error(serializer: Any) -> None:
    with pytest.raises(SerializationError):
        serializer.loads(b"\xc1\xff{not valid")


class UpperJson(JsonSerializer):
    """A custom serializer, loaded by dotted path."""


def test_custom_serializer_by_dotted_path() -> None:
    serializer = make_serializer("tests.core.test_serializers.UpperJson")
    assert isinstance(serializer, UpperJson)
    with pytest.raises(ConfigError, match="cannot import"):
        make_serializer("tests.core.nope.Missing")
