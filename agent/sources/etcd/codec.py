"""The v3 JSON gateway's encoding: keys and values in base64, 64-bit integers as strings, and
fields at their zero value left out (``false``, ``0``, empty lists are simply absent)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import attrs


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {text[:40]!r}") from exc


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes ``[prefix, range_end)`` every key starting with ``prefix``.

    The last byte that is not 0xff is incremented and everything after it dropped
    (``b"a\\xff"`` -> ``b"b"``); a prefix of only 0xff bytes (or empty) has no upper bound, which
    etcd spells ``b"\\0"`` (every key from ``prefix`` on).
    """
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] != 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"


def as_int(value: Any, name: str) -> int:
    """An int64 field: a JSON string (protobuf's mapping) or a number; absent is 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{name} is not an integer: {value!r}")
    return int(value)


@attrs.frozen
class KeyValue:
    """One key as etcd holds it. A deleted key (in a watch event) has only key and mod_revision."""

    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "KeyValue":
        return cls(
            key=unb64(raw.get("key", "")),
            value=unb64(raw.get("value", "")),
            create_revision=as_int(raw.get("create_revision"), "create_revision"),
            mod_revision=as_int(raw.get("mod_revision"), "mod_revision"),
            version=as_int(raw.get("version"), "version"),
        )


@attrs.frozen
class RangeResult:
    """Keys in order, read at one ``revision``; ``more`` when a ``limit`` left some out."""

    revision: int
    kvs: tuple[KeyValue, ...]
    count: int
    more: bool = False


def header_revision(answer: Mapping[str, Any]) -> int:
    """The store revision an answer was made at (``header.revision``)."""
    header = answer.get("header")
    if not isinstance(header, Mapping):
        raise ValueError("answer has no header")
    return as_int(header.get("revision"), "header.revision")
