"""Values as Go prints them: type names, equality, `%v` formatting, floats and JSON."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from aliecs.workflow.expr.errors import _INT_MAX, _INT_MIN, ExprError, _quote
from aliecs.workflow.expr.scope import IntRange

# ==================================================================================================
# Values: type names, equality, formatting


def type_name(value: Any) -> str:
    """Go-flavoured name of a value's type, for error messages."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "map"
    if callable(value):
        return "func"
    return type(value).__name__


def _describe(value: Any) -> str:
    """`string "a"`, `int 1`, `nil`: a value with its type, shortened for error messages."""
    if value is None:
        return "nil"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"string {_quote(text)}"
    if callable(value) and not isinstance(value, Mapping):
        return "func"
    try:
        text = format_value(value)
    except ExprError:
        text = "?"
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type_name(value)} {text}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _wrap(value: int) -> int:
    """Go's int is 64 bits and wraps around silently."""
    if _INT_MIN <= value <= _INT_MAX:
        return value
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


def _loose_equal(a: Any, b: Any) -> bool:
    """expr's runtime equality: values of different types are simply unequal."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_loose_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_loose_equal(a[k], b[k]) for k in a)
    if type(a) is type(b):
        return bool(a == b)
    return False


def _comparable(a: Any, b: Any) -> bool:
    """Whether expr's checker accepts `a == b` (it rejects e.g. string == int)."""
    if a is None or b is None:
        return True
    if _is_number(a) and _is_number(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return True
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str)
    return type(a) is type(b)


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of a positive finite float and the decimal point position
    (value = 0.DIGITS x 10**dp), like Go's strconv shortest formatting."""
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    return stripped.rstrip("0") or "0", point


def _format_e(digits: str, point: int) -> str:
    exp = point - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    return f"{mant}e{sign}{abs(exp):02d}"


def _format_f(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * (-point) + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def go_float(value: float) -> str:
    """A float as Go's `fmt.Sprintf("%v", f)` prints it (`%g` with the shortest digits): `0.5`,
    `3`, `123456`, `1e+06`, `1.5e-05`, `+Inf`, `NaN`. Exponent form is used when the decimal
    exponent is below -4 or at least 6 (Go's rule for shortest %g)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    digits, point = _shortest_digits(abs(value))
    exp = point - 1
    if exp < -4 or exp >= 6:
        return sign + _format_e(digits, point)
    return sign + _format_f(digits, point)


def _json_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {go_float(value)}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    digits, point = _shortest_digits(abs(value))
    if abs(value) < 1e-6 or abs(value) >= 1e21:
        text = _format_e(digits, point)
        text = re.sub(r"e-0(\d)$", r"e-\1", text)
        return sign + text
    return sign + _format_f(digits, point)


_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _json_string(text: str) -> str:
    out = ['"']
    for ch in text:
        escaped = _JSON_ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_json(value: Any) -> str:
    """`value` encoded like Go's `json.Marshal`: compact, map keys sorted, `<>&` escaped, floats
    without a needless `.0`. Raises `ValueError` for what Go cannot encode (NaN, functions…)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = []
        for key in value:
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise ValueError(f"json: unsupported map key type {type_name(key)}")
            items.append((str(key), value[key]))
        items.sort(key=lambda kv: kv[0].encode("utf-8", "surrogatepass"))
        return "{" + ",".join(f"{_json_string(k)}:{go_json(v)}" for k, v in items) + "}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name[:1].isupper()}
        return "{" + ",".join(f"{_json_string(k)}:{go_json(v)}" for k, v in fields.items()) + "}"
    raise ValueError(f"json: unsupported type: {type_name(value)}")


def _format_nested(value: Any) -> str:
    """Go's %v for a value inside a composite (lists are `[a b]` there, not JSON)."""
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_format_nested(v) for v in value) + "]"
    return format_value(value)


def format_value(value: Any) -> str:
    """A tag's result as AliECS writes it into the field.

    Lists are JSON (`["a","b"]`, AliECS marshals `[]interface{}`/`[]string`); everything else is
    Go's `%v`: strings as is, `true`/`false`, ints in decimal, floats in Go's shortest form, nil as
    `<nil>`, maps as `map[k:v ...]` with sorted keys, structs (dataclasses) as `{v1 v2}`.
    """
    if value is None:
        return "<nil>"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, IntRange):
        return "[" + " ".join(str(v) for v in value) + "]"
    if isinstance(value, (list, tuple)):
        return go_json(value)
    if isinstance(value, Mapping):
        keys = sorted(value, key=lambda k: (type_name(k), format_value(k)))
        return "map[" + " ".join(f"{_format_nested(k)}:{_format_nested(value[k])}" for k in keys) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts = (_format_nested(getattr(value, f.name)) for f in dataclasses.fields(value))
        return "{" + " ".join(parts) + "}"
    if callable(value):
        return f"<func {getattr(value, '__name__', '?')}>"
    return str(value)
