"""Deterministic CBOR (RFC 8949 section 4.2) of JSON values, for fractional v3 bucketing.

v3 hashes the CBOR bytes of the bucketing value, so every evaluator must produce the
same bytes for the same JSON value. This matches what openfeature-flagd-core 2.x hashes
(``cbor2.dumps(normalize_numbers(value), canonical=True)``):

- a float with no fractional part in [-2**63, 2**64 - 1] is encoded as that integer
  (so ``1.0``, ``1`` and ``-0.0``/``0`` hash alike);
- integers use the shortest head; beyond 64 bits, bignum tags 2/3;
- other floats use the shortest of half/single/double that keeps the value exactly;
  NaN and the infinities are the half-precision forms;
- map keys are sorted by (length of encoded key, encoded key bytes).

Written here rather than imported: it is a few dozen lines, and ``cbor2`` stays a
test-only reference for the differential test.
"""

from __future__ import annotations

import math
import struct
from typing import Any

_NAN = b"\xf9\x7e\x00"
_POSITIVE_INFINITY = b"\xf9\x7c\x00"
_NEGATIVE_INFINITY = b"\xf9\xfc\x00"
_INT_LOW, _INT_HIGH = -(2**63), 2**64 - 1


def _head(major: int, length: int) -> bytes:
    """The initial byte(s) of a data item: major type and argument, shortest form."""
    tag = major << 5
    if length < 24:
        return bytes((tag | length,))
    if length < 0x100:
        return bytes((tag | 24, length))
    if length < 0x10000:
        return bytes((tag | 25,)) + length.to_bytes(2, "big")
    if length < 0x100000000:
        return bytes((tag | 26,)) + length.to_bytes(4, "big")
    return bytes((tag | 27,)) + length.to_bytes(8, "big")


def _integer(value: int) -> bytes:
    if 0 <= value < 2**64:
        return _head(0, value)
    if -(2**64) <= value < 0:
        return _head(1, -1 - value)
    tag, magnitude = (2, value) if value >= 0 else (3, -1 - value)
    payload = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")
    return _head(6, tag) + _head(2, len(payload)) + payload


def _float(value: float) -> bytes:
    if value != value:
        return _NAN
    if math.isinf(value):
        return _POSITIVE_INFINITY if value > 0 else _NEGATIVE_INFINITY
    encoded = struct.pack(">Bd", 0xFB, value)
    for layout, initial in ((">Bf", 0xFA), (">Be", 0xF9)):
        try:
            shorter = struct.pack(layout, initial, value)
        except OverflowError:
            break
        if struct.unpack(layout, shorter)[1] != value:
            break
        encoded = shorter
    return encoded


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _head(3, len(data)) + data


def encode(value: Any) -> bytes:
    """The deterministic CBOR bytes of a JSON value.

    Raises:
        TypeError: for a value that is not JSON (e.g. a set).
        UnicodeEncodeError: for a string holding a lone surrogate.
    """
    kind = type(value)
    if kind is str:
        return _text(value)
    if kind is bool:
        return b"\xf5" if value else b"\xf4"
    if kind is int:
        return _integer(value)
    if kind is float:
        if value.is_integer() and _INT_LOW <= value <= _INT_HIGH:
            return _integer(int(value))
        return _float(value)
    if value is None:
        return b"\xf6"
    if kind is list or kind is tuple:
        return _head(4, len(value)) + b"".join(encode(item) for item in value)
    if kind is dict:
        pairs = sorted((_sort_key(encode(key)), encode(item)) for key, item in value.items())
        return _head(5, len(pairs)) + b"".join(key[1] + item for key, item in pairs)
    raise TypeError(f"cannot encode {kind.__name__} as CBOR for fractional bucketing")


def _sort_key(encoded: bytes) -> tuple[int, bytes]:
    return len(encoded), encoded
