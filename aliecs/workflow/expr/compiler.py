"""The compiler: a syntax tree to Python closures over the scope, with Go arithmetic."""

from __future__ import annotations

import functools
import math
import re
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from aliecs.workflow.expr.builtins import _BUILTINS, _BuiltinError
from aliecs.workflow.expr.errors import ExprError, ExprEvalError, Scope, UnknownName, _Eval, _quote
from aliecs.workflow.expr.goformat import (
    _comparable,
    _describe,
    _is_number,
    _loose_equal,
    _wrap,
    format_value,
    type_name,
)
from aliecs.workflow.expr.nodes import (
    ArrayNode,
    Binary,
    BuiltinCall,
    Call,
    Chain,
    Compare,
    Conditional,
    Identifier,
    Let,
    Literal,
    MapNode,
    Member,
    Node,
    SliceNode,
    Unary,
)
from aliecs.workflow.expr.scope import IntRange, Namespace, ScopeFunction

# ==================================================================================================
# Compiler: AST -> closures over the scope


class _NilChain(Exception):
    """Raised by an optional member access on nil; caught by the enclosing Chain."""


class _Compiler:
    """Turns an AST into nested closures `scope -> value`: evaluating a cached program then costs a
    few Python calls per node, with no per-evaluation dispatch on node types."""

    def __init__(self, source: str) -> None:
        self.src = source

    def fail(self, message: str, pos: int) -> NoReturn:
        raise ExprEvalError(message, self.src, pos)

    def compile(self, node: Node) -> _Eval:
        method = getattr(self, "c_" + type(node).__name__)
        result: _Eval = method(node)
        return result

    # -- leaves

    def c_Literal(self, node: Literal) -> _Eval:
        value = node.value
        return lambda scope: value

    def c_Identifier(self, node: Identifier) -> _Eval:
        name, pos, src = node.name, node.pos, self.src
        if name == "$env":
            return lambda scope: scope

        def identifier(scope: Scope) -> Any:
            try:
                return scope[name]
            except KeyError:
                raise UnknownName(name, src, pos) from None

        return identifier

    # -- operators

    def c_Unary(self, node: Unary) -> _Eval:
        operand = self.compile(node.operand)
        op, pos = node.op, node.pos
        fail = self.fail

        if op == "!":

            def negate(scope: Scope) -> Any:
                value = operand(scope)
                if not isinstance(value, bool):
                    fail(f"invalid operation: !{_describe(value)} (operand must be bool)", pos)
                return not value

            return negate

        def sign(scope: Scope) -> Any:
            value = operand(scope)
            if not _is_number(value):
                fail(f"invalid operation: {op}{_describe(value)} (operand must be a number)", pos)
            if op == "+":
                return value
            return _wrap(-value) if isinstance(value, int) else -value

        return sign

    def c_Binary(self, node: Binary) -> _Eval:
        left = self.compile(node.left)
        right = self.compile(node.right)
        op, pos = node.op, node.pos
        fail = self.fail

        if op in ("&&", "||"):
            want = op == "||"  # value of the left side that decides the result

            def logical(scope: Scope) -> Any:
                a = left(scope)
                if not isinstance(a, bool):
                    fail(f"invalid operation: {op} needs bool operands, got {_describe(a)}", pos)
                if a is want:
                    return a
                b = right(scope)
                if not isinstance(b, bool):
                    fail(f"invalid operation: {op} needs bool operands, got {_describe(b)}", pos)
                return b

            return logical

        if op == "??":

            def coalesce(scope: Scope) -> Any:
                a = left(scope)
                return right(scope) if a is None else a

            return coalesce

        arith = _ARITHMETIC[op]

        def binary(scope: Scope) -> Any:
            a = left(scope)
            b = right(scope)
            try:
                return arith(a, b)
            except _OperandError as exc:
                fail(exc.message(op, a, b), pos)

        return binary

    def c_Compare(self, node: Compare) -> _Eval:
        first = self.compile(node.first)
        rest = [(op, pos, self.compile(operand)) for op, pos, operand in node.rest]
        src = self.src

        def compare(scope: Scope) -> Any:
            a = first(scope)
            for op, pos, operand in rest:
                b = operand(scope)
                if not _compare(op, a, b, src, pos):
                    return False
                a = b
            return True

        return compare

    def c_Conditional(self, node: Conditional) -> _Eval:
        cond = self.compile(node.cond)
        then = self.compile(node.then)
        otherwise = self.compile(node.otherwise)
        pos, fail = node.pos, self.fail

        def conditional(scope: Scope) -> Any:
            value = cond(scope)
            if value is True:
                return then(scope)
            if value is False:
                return otherwise(scope)
            fail(f"non-bool expression ({_describe(value)}) used as condition", pos)

        return conditional

    # -- member access, calls

    def c_Chain(self, node: Chain) -> _Eval:
        inner = self.compile(node.inner)

        def chain(scope: Scope) -> Any:
            try:
                return inner(scope)
            except _NilChain:
                return None

        return chain

    def c_Member(self, node: Member) -> _Eval:
        obj = self.compile(node.obj)
        key = self.compile(node.key)
        optional, dotted, pos = node.optional, node.dotted, node.pos
        owner = _dotted_name(node.obj)
        src = self.src

        def member(scope: Scope) -> Any:
            value = obj(scope)
            if value is None and optional:
                raise _NilChain
            return _fetch(value, key(scope), dotted, owner, src, pos)

        return member

    def c_SliceNode(self, node: SliceNode) -> _Eval:
        obj = self.compile(node.obj)
        start = self.compile(node.start) if node.start is not None else None
        stop = self.compile(node.stop) if node.stop is not None else None
        pos, fail = node.pos, self.fail

        def slice_(scope: Scope) -> Any:
            value = obj(scope)
            if not isinstance(value, (str, list, tuple)):
                fail(f"cannot slice {_describe(value)}", pos)
            length = len(value)
            bounds = []
            for part, default in ((start, 0), (stop, length)):
                index = default if part is None else part(scope)
                if not isinstance(index, int) or isinstance(index, bool):
                    fail(f"non-integer slice index {_describe(index)}", pos)
                if index < 0:
                    index = max(length + index, 0)
                bounds.append(min(index, length))
            lo, hi = bounds
            result = value[min(lo, hi) : hi]
            return list(result) if isinstance(result, tuple) else result

        return slice_

    def c_Call(self, node: Call) -> _Eval:
        args = [self.compile(a) for a in node.args]
        pos, src, fail = node.pos, self.src, self.fail
        callee_node = node.callee
        name = _dotted_name(callee_node) or "function"
        if isinstance(callee_node, Member):
            target = self.compile(callee_node)
        elif isinstance(callee_node, Identifier):
            target = self.c_Identifier(callee_node)
        else:  # pragma: no cover - the parser only builds these two
            target = self.compile(callee_node)

        def call(scope: Scope) -> Any:
            fn = target(scope)
            if not callable(fn) or isinstance(fn, type):
                fail(f"{name} is not callable ({_describe(fn)})", pos)
            values = [a(scope) for a in args]
            try:
                if isinstance(fn, ScopeFunction):
                    return fn(scope, *values)
                return fn(*values)
            except ExprError:
                raise
            except _NilChain:
                raise
            except Exception as exc:
                raise ExprEvalError(f"{name}(): {exc}", src, pos) from exc

        return call

    def c_BuiltinCall(self, node: BuiltinCall) -> _Eval:
        args = [self.compile(a) for a in node.args]
        name, pos, src = node.name, node.pos, self.src
        impl = _BUILTINS[name]

        def builtin(scope: Scope) -> Any:
            values = [a(scope) for a in args]
            try:
                return impl(*values)
            except (_BuiltinError, TypeError, ValueError) as exc:
                raise ExprEvalError(f"{name}(): {exc}", src, pos) from None

        return builtin

    # -- literals, let

    def c_ArrayNode(self, node: ArrayNode) -> _Eval:
        items = [self.compile(i) for i in node.items]
        return lambda scope: [item(scope) for item in items]

    def c_MapNode(self, node: MapNode) -> _Eval:
        pairs = [(self.compile(k), self.compile(v), k.pos) for k, v in node.pairs]
        fail = self.fail

        def mapping(scope: Scope) -> Any:
            result: dict[Any, Any] = {}
            for key, value, pos in pairs:
                k = key(scope)
                v = value(scope)
                try:
                    result[k] = v
                except TypeError:
                    fail(f"cannot use {_describe(k)} as a map key", pos)
            return result

        return mapping

    def c_Let(self, node: Let) -> _Eval:
        value = self.compile(node.value)
        body = self.compile(node.body)
        name = node.name

        def let(scope: Scope) -> Any:
            return body(ChainMap({name: value(scope)}, scope))  # type: ignore[arg-type]

        return let


def _dotted_name(node: Node) -> str:
    """`strings.ToUpper` for the callee of a call, for messages ("" when not a simple path)."""
    if isinstance(node, Identifier):
        return node.name
    if isinstance(node, Chain):
        return _dotted_name(node.inner)
    if isinstance(node, Member) and node.dotted and isinstance(node.key, Literal):
        owner = _dotted_name(node.obj)
        return f"{owner}.{node.key.value}" if owner else str(node.key.value)
    if isinstance(node, Call):
        owner = _dotted_name(node.callee)
        return f"{owner}()" if owner else ""
    return ""


def _fetch(value: Any, key: Any, dotted: bool, owner: str, src: str, pos: int) -> Any:
    """`value.key` / `value[key]` with expr's rules: maps give nil for a missing key, arrays accept
    negative indices, strings index bytes, objects expose public attributes."""
    if isinstance(value, Mapping):
        if isinstance(value, Namespace):
            try:
                return value[key]
            except (KeyError, TypeError):
                raise UnknownName(f"{value.name}.{key}", src, pos) from None
        try:
            return value.get(key)
        except TypeError:
            raise ExprEvalError(f"cannot use {_describe(key)} as a map key", src, pos) from None
    if value is None:
        raise ExprEvalError(f"cannot fetch {format_value(key)} from nil{_of(owner)}", src, pos)
    if isinstance(value, (list, tuple, str)):
        if dotted:
            raise ExprEvalError(f"type {type_name(value)} has no field {key}{_of(owner)}", src, pos)
        if not isinstance(key, int) or isinstance(key, bool):
            raise ExprEvalError(
                f"{type_name(value)} elements can only be selected using an integer (got {_describe(key)})",
                src,
                pos,
            )
        data: Sequence[Any] | bytes = value.encode("utf-8") if isinstance(value, str) else value
        index = key + len(data) if key < 0 else key
        if not 0 <= index < len(data):
            raise ExprEvalError(f"index out of range: {key} (array length is {len(data)})", src, pos)
        return data[index]
    if isinstance(value, (bool, int, float)) or callable(value):
        raise ExprEvalError(f"type {type_name(value)} has no field {format_value(key)}{_of(owner)}", src, pos)
    if not isinstance(key, str) or not key or key.startswith("_"):
        raise ExprEvalError(f"type {type_name(value)} has no field {format_value(key)}{_of(owner)}", src, pos)
    try:
        return getattr(value, key)
    except AttributeError:
        raise ExprEvalError(f"type {type_name(value)} has no field {key}{_of(owner)}", src, pos) from None


def _of(owner: str) -> str:
    return f" (in {owner})" if owner else ""


def _compare(op: str, a: Any, b: Any, src: str, pos: int) -> bool:
    """One link of a comparison chain: ==, !=, <, <=, >, >=, in, contains, startsWith, endsWith,
    matches and their `not` forms."""
    negate = op.startswith("not ")
    if negate:
        op = op[4:]
    if op in ("==", "!="):
        if not _comparable(a, b):
            raise ExprEvalError(f"cannot compare {_describe(a)} with {_describe(b)} using {op}", src, pos)
        return _loose_equal(a, b) == (op == "==")
    if op in ("<", "<=", ">", ">="):
        if not ((_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
            raise ExprEvalError(f"cannot compare {_describe(a)} with {_describe(b)} using {op}", src, pos)
        if op == "<":
            return bool(a < b)
        if op == "<=":
            return bool(a <= b)
        if op == ">":
            return bool(a > b)
        return bool(a >= b)
    if op == "in":
        if isinstance(b, (list, tuple)):
            result = any(_loose_equal(a, item) for item in b)
        elif isinstance(b, Mapping):
            try:
                result = a in b
            except TypeError:
                result = False
        elif b is not None and not isinstance(b, (str, int, float, bool)) and not callable(b):
            result = isinstance(a, str) and not a.startswith("_") and hasattr(b, a)
        else:
            raise ExprEvalError(f'operator "in" not defined on {_describe(b)}', src, pos)
        return result != negate
    # string operators
    if not (isinstance(a, str) and isinstance(b, str)):
        raise ExprEvalError(
            f"invalid operation: {_describe(a)} {op} {_describe(b)} (operands must be strings)", src, pos
        )
    if op == "contains":
        result = b in a
    elif op == "startsWith":
        result = a.startswith(b)
    elif op == "endsWith":
        result = a.endswith(b)
    else:  # matches
        try:
            result = _regex(b).search(a) is not None
        except re.error as exc:
            raise ExprEvalError(f"invalid regular expression {_quote(b)}: {exc}", src, pos) from None
    return result != negate


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# -- arithmetic


class _OperandError(Exception):
    """Internal: the operand types do not suit the operator; turned into ExprEvalError."""

    def __init__(self, detail: str = "mismatched types") -> None:
        super().__init__(detail)
        self.detail = detail

    def message(self, op: str, a: Any, b: Any) -> str:
        return f"invalid operation: {_describe(a)} {op} {_describe(b)} ({self.detail})"


def _add(a: Any, b: Any) -> Any:
    if _is_number(a) and _is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return _wrap(a + b)
        return float(a) + float(b)
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    # AliECS's addNil: nil counts as "" next to a string (or another nil).
    if (a is None or isinstance(a, str)) and (b is None or isinstance(b, str)):
        return (a or "") + (b or "")
    raise _OperandError()


def _numeric(int_op: Callable[[int, int], int], float_op: Callable[[float, float], float]) -> Any:
    def apply(a: Any, b: Any) -> Any:
        if not (_is_number(a) and _is_number(b)):
            raise _OperandError("operands must be numbers")
        if isinstance(a, int) and isinstance(b, int):
            return _wrap(int_op(a, b))
        return float_op(float(a), float(b))

    return apply


def _divide(a: Any, b: Any) -> float:
    if not (_is_number(a) and _is_number(b)):
        raise _OperandError("operands must be numbers")
    x, y = float(a), float(b)
    if y == 0:
        if x == 0 or math.isnan(x):
            return math.nan
        return math.copysign(math.inf, x) * math.copysign(1.0, y)
    return x / y


def _modulo(a: Any, b: Any) -> int:
    if not (isinstance(a, int) and isinstance(b, int)) or isinstance(a, bool) or isinstance(b, bool):
        raise _OperandError("operands must be integers")
    if b == 0:
        raise _OperandError("integer divide by zero")
    remainder = abs(a) % abs(b)
    return _wrap(-remainder if a < 0 else remainder)


def _power(a: Any, b: Any) -> float:
    if not (_is_number(a) and _is_number(b)):
        raise _OperandError("operands must be numbers")
    try:
        return math.pow(float(a), float(b))
    except OverflowError:
        return math.inf
    except ValueError:
        if float(a) == 0:
            return math.inf
        return math.nan


def _range(a: Any, b: Any) -> IntRange:
    if not (isinstance(a, int) and isinstance(b, int)) or isinstance(a, bool) or isinstance(b, bool):
        raise _OperandError("operands must be integers")
    if b - a >= 1_000_000:
        raise _OperandError("range too large")
    return IntRange(range(a, b + 1))


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add,
    "-": _numeric(lambda x, y: x - y, lambda x, y: x - y),
    "*": _numeric(lambda x, y: x * y, lambda x, y: x * y),
    "/": _divide,
    "%": _modulo,
    "**": _power,
    "..": _range,
}
