"""The expr-lang builtins that templates may call (len, trim, split, ...)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from aliecs.workflow.expr.errors import _INT_MAX, _INT_MIN, _quote
from aliecs.workflow.expr.goformat import _describe, _is_number, _wrap, format_value, go_float, type_name
from aliecs.workflow.expr.parser import _SUPPORTED_BUILTINS

# -- builtins (the expr-lang ones the templates may call)


class _BuiltinError(Exception):
    pass


def _need(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise _BuiltinError(f"expected {what}, got {_describe(value)}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _b_len(value: Any) -> int:
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value)
    raise _BuiltinError(f"invalid argument for len ({_describe(value)})")


def _b_abs(value: Any) -> Any:
    _need(value, (int, float), "a number")
    return _wrap(abs(value)) if isinstance(value, int) else abs(value)


def _b_int(value: Any) -> int:
    if _is_number(value):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            raise _BuiltinError(f"cannot convert {go_float(value)} to int")
        return _wrap(int(value))
    if isinstance(value, str):
        if not re.fullmatch(r"[+-]?[0-9]+", value):
            raise _BuiltinError(f"invalid syntax: {_quote(value)}")
        number = int(value)
        if not _INT_MIN <= number <= _INT_MAX:
            raise _BuiltinError(f"value out of range: {_quote(value)}")
        return number
    raise _BuiltinError(f"invalid operation: int({_describe(value)})")


def _b_float(value: Any) -> float:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        if value != value.strip() or "_" in value:
            raise _BuiltinError(f"invalid syntax: {_quote(value)}")
        try:
            return float(value)
        except ValueError:
            raise _BuiltinError(f"invalid syntax: {_quote(value)}") from None
    raise _BuiltinError(f"invalid operation: float({_describe(value)})")


def _b_trim(value: Any, chars: Any = None) -> str:
    _need(value, str, "a string")
    if chars is None:
        return str(value).strip(GO_SPACE)
    return str(value).strip(_need(chars, str, "a string"))


def _b_split(value: Any, sep: Any, n: Any = -1) -> list[str]:
    text, separator = _need(value, str, "a string"), _need(sep, str, "a string")
    limit = _need(n, int, "an integer")
    if limit == 0:
        return []
    if separator == "":
        chars = list(text)
        if limit > 0 and len(chars) > limit:
            chars = [*chars[: limit - 1], "".join(chars[limit - 1 :])]
        return chars
    return text.split(separator, limit - 1 if limit > 0 else -1)


def _b_join(value: Any, sep: Any = "") -> str:
    items = _need(value, (list, tuple), "an array")
    for item in items:
        _need(item, str, "an array of strings")
    return str(_need(sep, str, "a string")).join(items)


def _b_minmax(pick: Callable[..., Any]) -> Callable[..., Any]:
    def apply(*values: Any) -> Any:
        flat: list[Any] = []
        for value in values:
            flat.extend(value if isinstance(value, (list, tuple)) else [value])
        if not flat:
            raise _BuiltinError("not enough arguments")
        for value in flat:
            _need(value, (int, float), "numbers")
        return pick(flat)

    return apply


# Go's unicode.IsSpace set, used by trim() and strings.TrimSpace.
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

_BUILTINS: dict[str, Callable[..., Any]] = {
    "len": _b_len,
    "abs": _b_abs,
    "int": _b_int,
    "float": _b_float,
    "string": format_value,
    "trim": _b_trim,
    "trimPrefix": lambda s, p: _need(s, str, "a string").removeprefix(_need(p, str, "a string")),
    "trimSuffix": lambda s, p: _need(s, str, "a string").removesuffix(_need(p, str, "a string")),
    "upper": lambda s: _need(s, str, "a string").upper(),
    "lower": lambda s: _need(s, str, "a string").lower(),
    "split": _b_split,
    "join": _b_join,
    "hasPrefix": lambda s, p: _need(s, str, "a string").startswith(_need(p, str, "a string")),
    "hasSuffix": lambda s, p: _need(s, str, "a string").endswith(_need(p, str, "a string")),
    "keys": lambda m: list(_need(m, Mapping, "a map").keys()),
    "values": lambda m: list(_need(m, Mapping, "a map").values()),
    "first": lambda a: (_need(a, (list, tuple), "an array") or [None])[0],
    "last": lambda a: (_need(a, (list, tuple), "an array") or [None])[-1],
    "max": _b_minmax(max),
    "min": _b_minmax(min),
    "type": type_name,
}
assert set(_BUILTINS) == _SUPPORTED_BUILTINS
