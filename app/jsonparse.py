"""The one JSON parser for what clients send: Python's ``json`` with limits.

The standard parser accepts things that later fail far from the request (and answered 500): a
5,000-digit number (``int()`` refuses it, a ValueError nothing expected), nesting deep enough to
raise RecursionError, ``"\\ud800"`` escapes that decode to lone surrogates no database or Redis
can encode, ``"\\u0000"`` (NUL, which no PostgreSQL text or JSONB value holds), and
``NaN``/``Infinity``, which are not JSON at all. :func:`loads` refuses all of them
with :class:`JSONRejected`, whose text says what was wrong and is meant for the client.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100  # digits, sign, point and exponent of one number literal

_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONRejected(ValueError):
    """A body that is not JSON, or JSON past the limits. A ValueError, so every caller that
    already treats a ValueError from a JSON parser as bad input (Flask's ``get_json``) does so."""


def _number(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise JSONRejected(f"a number has more than {MAX_NUMBER_CHARS} characters")


def _int(text: str) -> int:
    _number(text)
    return int(text)


def _float(text: str) -> float:
    _number(text)
    value = float(text)
    if not math.isfinite(value):
        raise JSONRejected(f"number {text} is out of range")
    return value


def _constant(name: str) -> Any:
    raise JSONRejected(f"{name} is not a JSON value")


def _check_strings_and_depth(value: Any) -> None:
    """Walk the parsed value without recursion: nesting depth, and NULs and lone surrogates in keys
    and strings (an escape like ``"\\udc00"`` is valid JSON syntax but names no character)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                raise JSONRejected("a string holds a lone surrogate (\\ud800-\\udfff escape without its pair)")
            if "\x00" in item:
                raise JSONRejected("a string holds a NUL character (\\u0000)")
            continue
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise JSONRejected(f"arrays and objects nest deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def loads(data: str | bytes | bytearray) -> Any:
    """Parse a client's JSON (bytes must be UTF-8) or raise :class:`JSONRejected`."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONRejected(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(data, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise JSONRejected(f"arrays and objects nest deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise JSONRejected(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    _check_strings_and_depth(value)
    return value

