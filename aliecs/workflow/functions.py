"""The built-in functions that templates call: `strings.*`, `json.*`, `uid.*`, `util.*` and their
legacy top-level aliases, as AliECS installs them (`configuration/template/stack.go`,
`MakeUtilFuncMap`).

Behaviour follows the Go code, including its forgiving error handling, because templates rely on
it: `strings.Atoi("abc")` is 0, `json.Unmarshal` of bad JSON is nil, `json.Marshal` of something
unencodable is "", and `util.SuffixInRange` returns the *strings* "true"/"false". Arguments of the
wrong type are errors, as they are when expr type-checks a call against the Go signature.

Services that need the outside world (`config`, `inventory`, `runtime`, `dpl`, integration plugin
objects such as `odc`) are not defined here: callers pass them through the `extra` argument of
`base_function_scope()` (see `PROVIDER_NAMESPACES`), which merges them like AliECS merges plugin
object stacks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aliecs.workflow.expr import GO_SPACE, Namespace, ScopeFunction, format_value, go_json, type_name

__all__ = [
    "PROVIDER_NAMESPACES",
    "atoi",
    "base_function_scope",
    "dump",
    "is_falsy",
    "is_truthy",
    "itoa",
    "json_marshal",
    "json_sort",
    "json_unmarshal",
    "new_uid",
    "nullable",
    "prefixed_override",
    "suffix_in_range",
    "to_lower",
    "to_upper",
    "trim_quotes",
    "trim_space",
]

log = logging.getLogger(__name__)

# Namespaces that AliECS fills from services or plugins; they are added by the caller through
# `base_function_scope(extra=...)` once the corresponding providers exist.
PROVIDER_NAMESPACES = ("config", "inventory", "runtime", "dpl", "odc")

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 63) - 1


def _need_str(value: Any, function: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{function} takes a string argument, got {type_name(value)}")
    return value


# --------------------------------------------------------------------------------------------------
# strings


def atoi(text: Any) -> int:
    """Go's `strconv.Atoi`, forgiving like AliECS: invalid text gives 0 (and a warning), values
    beyond 64 bits are clamped."""
    text = _need_str(text, "Atoi")
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        log.warning("strings.Atoi: cannot convert %r to an integer, using 0", text)
        return 0
    number = int(text)
    if number > _INT_MAX or number < _INT_MIN:
        log.warning("strings.Atoi: %r is out of range", text)
        return _INT_MAX if number > 0 else _INT_MIN
    return number


def itoa(number: Any) -> str:
    """Go's `strconv.Itoa`; only integers are accepted (as the Go signature `func(int)` demands)."""
    if not isinstance(number, int) or isinstance(number, bool):
        raise TypeError(f"Itoa takes an int argument, got {type_name(number)}")
    return str(number)


def trim_quotes(text: Any) -> str:
    """Remove every leading and trailing double quote (Go `strings.Trim(in, "\\"")`)."""
    return _need_str(text, "TrimQuotes").strip('"')


def trim_space(text: Any) -> str:
    """Go's `strings.TrimSpace` (Unicode white space)."""
    return _need_str(text, "TrimSpace").strip(GO_SPACE)


def _simple_case(text: str, convert: Callable[[str], str]) -> str:
    # Go maps rune by rune; Python's full mappings may expand one character into several
    # ("ß".upper() == "SS"), which Go never does, so such characters are kept.
    out = []
    for ch in text:
        mapped = convert(ch)
        out.append(mapped if len(mapped) == 1 else ch)
    return "".join(out)


def to_upper(text: Any) -> str:
    """Go's `strings.ToUpper`."""
    return _simple_case(_need_str(text, "ToUpper"), str.upper)


def to_lower(text: Any) -> str:
    """Go's `strings.ToLower`."""
    return _simple_case(_need_str(text, "ToLower"), str.lower)


_TRUTHY = frozenset({"true", "yes", "y", "1", "on", "ok"})
_FALSY = frozenset({"", "false", "no", "n", "0", "off", "none"})


def is_truthy(text: Any) -> bool:
    """True for true/yes/y/1/on/ok, ignoring case and surrounding space."""
    return trim_space(to_lower(_need_str(text, "IsTruthy"))) in _TRUTHY


def is_falsy(text: Any) -> bool:
    """True for ""/false/no/n/0/off/none, ignoring case and surrounding space."""
    return trim_space(to_lower(_need_str(text, "IsFalsy"))) in _FALSY


# --------------------------------------------------------------------------------------------------
# json


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")


def _go_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"JSON number {text} out of range")
    return value


def json_unmarshal(text: Any) -> Any:
    """Decode JSON as Go does into `interface{}`: objects become dicts, arrays lists, every number a
    float. Invalid JSON gives nil (with a warning), as in AliECS."""
    text = _need_str(text, "Unmarshal")
    try:
        return json.loads(
            text,
            parse_int=_go_float,
            parse_float=_go_float,
            parse_constant=_reject_constant,
        )
    except ValueError as exc:
        log.warning("json.Unmarshal: invalid JSON %r: %s", text, exc)
        return None


def json_marshal(value: Any) -> str:
    """Encode like Go's `json.Marshal` (compact, sorted keys, `<>&` escaped); a value that cannot
    be encoded gives "" (with a warning), as in AliECS."""
    try:
        return go_json(value)
    except ValueError as exc:
        log.warning("json.Marshal: %s", exc)
        return ""


def json_sort(value: Any) -> Any:
    """Sort a decoded JSON array (used as `json.Marshal(json.Sort(json.Unmarshal(detectors)))` to
    get a canonical detector list).

    The Go implementation was not available to check; this sorts strings by their bytes and numbers
    numerically, and mixed arrays by the text Go would print for each item. nil stays nil.
    """
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"Sort takes an array, got {type_name(value)}")
    items = list(value)
    if all(isinstance(v, str) for v in items):
        return sorted(items, key=lambda v: v.encode("utf-8", "surrogatepass"))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        return sorted(items)
    return sorted(items, key=lambda v: format_value(v).encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------------------------------
# uid: Sonyflake ids in base58, like AliECS environment ids (github.com/osamingo/indigo)

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_EPOCH_NS = 1257894000 * 1_000_000_000  # indigo.StartTime(time.Unix(1257894000, 0)) in AliECS
_TICK_NS = 10_000_000  # Sonyflake counts time in 10 ms units


class _Sonyflake:
    """39 bits of time (10 ms since the epoch), 8 bits of sequence, 16 bits of machine id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._elapsed = 0
        self._sequence = 0
        # Sonyflake uses the low 16 bits of the private IP; host and process keep ids distinct here.
        self._machine = (hash(socket.gethostname()) ^ os.getpid()) & 0xFFFF

    def next_id(self) -> int:
        with self._lock:
            now = (time.time_ns() - _EPOCH_NS) // _TICK_NS
            if now > self._elapsed:
                self._elapsed = now
                self._sequence = 0
            else:
                self._sequence = (self._sequence + 1) & 0xFF
                if self._sequence == 0:
                    self._elapsed += 1
                    wait_ns = self._elapsed * _TICK_NS + _EPOCH_NS - time.time_ns()
                    if wait_ns > 0:
                        time.sleep(wait_ns / 1e9)
            return (self._elapsed << 24) | (self._sequence << 16) | self._machine


_sonyflake = _Sonyflake()


def _base58(number: int) -> str:
    if number == 0:
        return _BASE58[0]
    out = []
    while number > 0:
        number, digit = divmod(number, 58)
        out.append(_BASE58[digit])
    return "".join(reversed(out))


def new_uid() -> str:
    """A new unique id in the format of AliECS environment ids (e.g. `2oDvieFrVTi`)."""
    return _base58(_sonyflake.next_id())


# --------------------------------------------------------------------------------------------------
# util


def prefixed_override(scope: Mapping[str, Any], varname: Any, prefix: Any) -> str:
    """The value of `<prefix>_<varname>` if set, else of `<varname>`, else "".

    A value of "none" or only white space counts as not set. Only string variables of the scope are
    considered (the Go version reads the variable stack, which holds only strings).
    """
    varname = _need_str(varname, "PrefixedOverride")
    prefix = _need_str(prefix, "PrefixedOverride")

    def lookup(name: str) -> str | None:
        value = scope.get(name)
        if not isinstance(value, str) or value == "none" or not value.strip(GO_SPACE):
            return None
        return value

    prefixed = lookup(f"{prefix}_{varname}")
    if prefixed is not None:
        return prefixed
    fallback = lookup(varname)
    return fallback if fallback is not None else ""


def dump(text: Any, filepath: Any) -> str:
    """Write `text` to `filepath` (a debugging aid) and return `text`; a failed write is only logged,
    as in AliECS."""
    text = _need_str(text, "Dump")
    filepath = _need_str(filepath, "Dump")
    try:
        path = Path(filepath)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
    except OSError as exc:
        log.warning("util.Dump: could not dump variable to %s: %s", filepath, exc)
    return text


def nullable(value: Any) -> str:
    """nil gives "", a string is returned as is."""
    if value is None:
        return ""
    return _need_str(value, "Nullable")


def suffix_in_range(text: Any, prefix: Any, id_min: Any, id_max: Any) -> str:
    """ "true" if `text` is `prefix` followed by an integer within [id_min, id_max], else "false".

    Returns a string, not a bool, exactly like AliECS: it is meant for `enabled`, which compares
    text. Non-numeric bounds give "false" (and an error log).
    """
    text = _need_str(text, "SuffixInRange")
    prefix = _need_str(prefix, "SuffixInRange")
    id_min = _need_str(id_min, "SuffixInRange")
    id_max = _need_str(id_max, "SuffixInRange")
    if not prefix or not text.startswith(prefix):
        return "false"  # Go: TrimPrefix changed nothing
    suffix = text[len(prefix) :]

    def parse(number: str) -> int | None:
        if not re.fullmatch(r"[+-]?[0-9]+", number):
            return None
        value = int(number)
        return value if _INT_MIN <= value <= _INT_MAX else None

    value = parse(suffix)
    if value is None:
        return "false"
    low, high = parse(id_min), parse(id_max)
    if low is None or high is None:
        log.error("util.SuffixInRange: bounds %r and %r must be integers", id_min, id_max)
        return "false"
    return "true" if low <= value <= high else "false"


# --------------------------------------------------------------------------------------------------
# scope


def _strings() -> Namespace:
    return Namespace(
        "strings",
        {
            "Atoi": atoi,
            "Itoa": itoa,
            "TrimQuotes": trim_quotes,
            "TrimSpace": trim_space,
            "ToUpper": to_upper,
            "ToLower": to_lower,
            "IsTruthy": is_truthy,
            "IsFalsy": is_falsy,
        },
    )


def _json() -> Namespace:
    return Namespace(
        "json",
        {
            "Unmarshal": json_unmarshal,
            "Deserialize": json_unmarshal,
            "Marshal": json_marshal,
            "Serialize": json_marshal,
            "Sort": json_sort,
        },
    )


def _util() -> Namespace:
    return Namespace(
        "util",
        {
            "PrefixedOverride": ScopeFunction(prefixed_override, "PrefixedOverride"),
            "Dump": dump,
            "Nullable": nullable,
            "SuffixInRange": suffix_in_range,
        },
    )


def base_function_scope(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The functions every template can call, ready to be merged with the variables of a role.

    Contains the namespaces `strings`, `json`, `uid` and `util`, plus AliECS's legacy top-level
    names: every `strings` and `util` member (`IsFalsy(x)`, `SuffixInRange(...)`), `FromJson`,
    `ToJson` and `NewID`.

    `extra` is the extension point for service- and plugin-backed namespaces (`config`,
    `inventory`, `runtime`, `dpl`, plugin objects like `odc`, and their legacy aliases such as
    `GetConfig`): a mapping value is merged into an existing namespace of the same name (like
    AliECS's copyMap), other values replace the entry. Each call returns a new dict.
    """
    strings_ns, json_ns, util_ns = _strings(), _json(), _util()
    uid_ns = Namespace("uid", {"New": new_uid})
    scope: dict[str, Any] = {}
    scope.update(strings_ns)
    scope.update(util_ns)
    scope["FromJson"] = json_ns["Unmarshal"]
    scope["ToJson"] = json_ns["Marshal"]
    scope["NewID"] = uid_ns["New"]
    scope.update({"strings": strings_ns, "json": json_ns, "uid": uid_ns, "util": util_ns})
    for name, value in (extra or {}).items():
        current = scope.get(name)
        if isinstance(value, Mapping) and not isinstance(value, Namespace):
            merged = Namespace(name, current if isinstance(current, Mapping) else None)
            merged.update(value)
            scope[name] = merged
        elif isinstance(value, Namespace) and isinstance(current, Mapping):
            merged = Namespace(name, current)
            merged.update(value)
            scope[name] = merged
        else:
            scope[name] = value
    return scope
