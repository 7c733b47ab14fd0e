"""JavaScript value semantics for JSON values, as json-logic-js applies them.

JSON Logic is defined by its JavaScript reference implementation: truthiness, ``==``,
``<`` and string conversion all follow ECMAScript rules, which differ from Python's in
many small ways (``[] `` is falsy, ``"10" < 9`` compares numbers, ``1.0`` prints as
``"1"``). Keeping them here, in one place, lets every operator share them.

Numbers: JSON integers stay Python ``int`` and arithmetic keeps integral results ``int``
where cheap, so ``cat`` and equality behave as in JavaScript (``1 == 1.0``, ``"1"``).
Strings compare by code point, not by UTF-16 unit (they differ only beyond the BMP).
"""

from __future__ import annotations

import math
import re
from typing import Any

NAN = float("nan")
INF = float("inf")

# Number(str): the whole trimmed string must be a decimal literal (or hex/octal/binary).
_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\Z")
_RADIX = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)\Z")
# parseFloat(str): the longest decimal-literal prefix after leading whitespace.
_FLOAT_PREFIX = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_RADIX_BASE = {"x": 16, "o": 8, "b": 2}
_SAFE_INT = 2**53


def truthy(value: Any) -> bool:
    """JSON Logic truthiness: JavaScript's, except that an empty array is false too."""
    if value is True:
        return True
    if value is False or value is None:
        return False
    kind = type(value)
    if kind is str or kind is list:
        return len(value) > 0
    if kind is int:
        return value != 0
    if kind is float:
        return value == value and value != 0.0
    return True


def integral(number: float) -> int | float:
    """``number`` as an int when it is a whole number JavaScript could hold exactly."""
    if number.is_integer() and -_SAFE_INT <= number <= _SAFE_INT:
        return int(number)
    return number


def _decimal(text: str) -> int | float:
    if "Infinity" in text:
        return -INF if text[0] == "-" else INF
    if "." in text or "e" in text or "E" in text:
        return integral(float(text))
    return int(text)


def to_number(value: Any) -> int | float:
    """ECMAScript ``Number(value)`` for a JSON value."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    if value is None:
        return 0
    if kind is bool:
        return int(value)
    if kind is str:
        text = value.strip()
        if not text:
            return 0
        if _DECIMAL.match(text):
            return _decimal(text)
        if _RADIX.match(text):
            return int(text[2:], _RADIX_BASE[text[1].lower()])
        return NAN
    if kind is list:
        return to_number(to_string(value))
    return NAN


def parse_float(value: Any) -> int | float:
    """ECMAScript ``parseFloat(value)``: what json-logic-js's ``+`` and ``*`` apply."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    text = value if kind is str else to_string(value)
    match = _FLOAT_PREFIX.match(text.lstrip())
    if match is None:
        return NAN
    return _decimal(match.group())


def number_to_string(number: float) -> str:
    """ECMAScript ``Number::toString`` for a float (shortest round-trip digits)."""
    if number != number:
        return "NaN"
    if number in (INF, -INF):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    if number.is_integer() and abs(number) < 1e21:
        return str(int(number))
    sign = "-" if number < 0 else ""
    mantissa, _, exp = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # value = 0.DIGITS x 10**point
    point = len(whole) + (int(exp) if exp else 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    size = len(digits)
    if size <= point <= 21:
        return sign + digits + "0" * (point - size)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    power = point - 1
    head = digits[0] if size == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{head}e{'+' if power >= 0 else '-'}{abs(power)}"


def to_string(value: Any) -> str:
    """ECMAScript ``String(value)`` for a JSON value (arrays join, null items empty)."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        return number_to_string(value)
    if kind is list:
        return ",".join("" if item is None else to_string(item) for item in value)
    return "[object Object]"


def _is_number(value: Any) -> bool:
    kind = type(value)
    return kind is int or kind is float


def strict_equals(left: Any, right: Any) -> bool:
    """ECMAScript ``===``: same type and value; arrays and objects by identity."""
    kind = type(left)
    if kind is type(right):
        if kind is list or kind is dict:
            return left is right
        return left == right
    return _is_number(left) and _is_number(right) and left == right


def loose_equals(left: Any, right: Any) -> bool:
    """ECMAScript ``==`` (the abstract equality algorithm) for JSON values."""
    if type(left) is type(right) or (_is_number(left) and _is_number(right)):
        return strict_equals(left, right)
    if left is None or right is None:
        return False
    if type(left) is bool:
        return loose_equals(int(left), right)
    if type(right) is bool:
        return loose_equals(left, int(right))
    if type(left) is str and _is_number(right):
        return to_number(left) == right
    if _is_number(left) and type(right) is str:
        return left == to_number(right)
    left_object = type(left) is list or type(left) is dict
    right_object = type(right) is list or type(right) is dict
    if left_object and not right_object:
        return loose_equals(to_string(left), right)
    if right_object and not left_object:
        return loose_equals(left, to_string(right))
    return False


def _primitive(value: Any) -> Any:
    kind = type(value)
    return to_string(value) if kind is list or kind is dict else value


def less_than(left: Any, right: Any) -> bool:
    """ECMAScript ``left < right``: strings compare as strings, all else as numbers."""
    kind = type(left)
    if kind is type(right) and (kind is str or kind is int or kind is float):
        return left < right
    left, right = _primitive(left), _primitive(right)
    if type(left) is str and type(right) is str:
        return left < right
    return to_number(left) < to_number(right)


def less_equal(left: Any, right: Any) -> bool:
    """ECMAScript ``left <= right`` (false whenever a NaN is involved)."""
    kind = type(left)
    if kind is type(right) and (kind is str or kind is int or kind is float):
        return left <= right
    left, right = _primitive(left), _primitive(right)
    if type(left) is str and type(right) is str:
        return left <= right
    return to_number(left) <= to_number(right)


def greater_than(left: Any, right: Any) -> bool:
    """ECMAScript ``left > right``."""
    return less_than(right, left)


def greater_equal(left: Any, right: Any) -> bool:
    """ECMAScript ``left >= right``."""
    return less_equal(right, left)


def js_remainder(left: int | float, right: int | float) -> int | float:
    """ECMAScript ``%``: the remainder takes the sign of the dividend; ``x % 0`` is NaN."""
    if right == 0 or left != left or right != right or left in (INF, -INF):
        return NAN
    if type(left) is int and type(right) is int:
        result = abs(left) % abs(right)
        return -result if left < 0 else result
    return integral(math.fmod(left, right))


def js_divide(left: int | float, right: int | float) -> int | float:
    """ECMAScript ``/``: division by zero gives an infinity (or NaN for ``0/0``)."""
    if right == 0:
        if left == 0 or left != left:
            return NAN
        negative = (left < 0) != (math.copysign(1.0, right) < 0)
        return -INF if negative else INF
    if type(left) is int and type(right) is int and left % right == 0:
        return left // right
    return integral(left / right)
