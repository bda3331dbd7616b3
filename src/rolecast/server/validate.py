"""A request's fields checked as OpenAI checks them: each wrong type, out-of-range or
non-finite value is a 400 in OpenAI's error shape that names the field (``param``).

Run on the parsed body before anything is loaded, generated or saved.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import ApiError

INT64 = (-(2**63), 2**63 - 1)  # OpenAI's range for ``seed``
MAX_INT_DIGITS = 64  # longer integers in a body are read as ±inf, so that the field is named
SESSION_ID = re.compile(r"[\x21-\x7e]{1,128}")  # it goes back in a header: visible ASCII


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param=param)


def _json_int(text: str) -> int | float:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:  # Python refuses to read over 4300 digits
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def loads(data: bytes | bytearray) -> Any:
    """The JSON body; an integer too long to be any field's value is read as ±inf (then the
    field's check refuses it) instead of failing to parse."""
    return json.loads(data, parse_int=_json_int)


def kind(value: Any) -> str:
    """The JSON type of ``value``, in the words of OpenAI's errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def integer(body: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    """An integer field from ``lo`` to ``hi`` (a number like 5.0 counts), or None if absent."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(
            f"'{key}' must be a number (an integer from {lo} to {hi}), not {kind(value)}", key
        )
    if isinstance(value, float):
        if not value.is_integer():  # also NaN and ±inf
            raise bad(f"'{key}' must be an integer from {lo} to {hi}, not {value!r}", key)
        value = int(value)
    if not lo <= value <= hi:
        raise bad(f"'{key}' must be an integer from {lo} to {hi}", key)
    return value


def number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    """A finite number field from ``lo`` to ``hi``, or None if absent."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(f"'{key}' must be a number from {lo:g} to {hi:g}, not {kind(value)}", key)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise bad(f"'{key}' must be a number from {lo:g} to {hi:g}, not {value!r}", key)
    return float(value)


def boolean(body: dict[str, Any], key: str, default: bool = False) -> bool:
    """A JSON boolean (``"false"``, a string, is not one)."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"'{key}' must be true or false, not {kind(value)}", key)
    return value


def string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad(f"'{key}' must be a string, not {kind(value)}", key)
    return value


def obj(body: dict[str, Any], key: str) -> dict[str, Any]:
    """An object field, ``{}`` if absent."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f"'{key}' must be an object, not {kind(value)}", key)
    return value


def session_id(value: str, where: str, param: str | None) -> str:
    """A session id: it is echoed in the ``X-Session-Id`` response header, so checked here,
    before anything is done, rather than failing after the turn was saved."""
    if not SESSION_ID.fullmatch(value):
        raise bad(
            f"{where} (the session id) must be 1 to 128 visible ASCII characters: letters, "
            "digits and punctuation, no spaces",
            param,
        )
    return value
