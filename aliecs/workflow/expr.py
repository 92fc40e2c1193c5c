"""The `{{ }}` expression language of workflow and task templates.

AliECS splits each templated field with valyala/fasttemplate on `{{`/`}}` and compiles every tag
with expr-lang/expr (v1.17) against a map of variables and functions
(`configuration/template/fields.go`). This module re-implements that pipeline in Python: a tokenizer
and a precedence-climbing parser that follow expr's grammar (same operators, precedences and
literals), an AST compiled to Python closures, and `render()` for the fasttemplate layer. It does
not use regular-expression substitution or Python's `eval`, so template text can never run Python
code.

Semantics follow expr where the corpus relies on them:

* Names are strict: an identifier missing from the scope is an error (`UnknownName`), never "".
* Types are strict: `&&`, `||`, `!` and `?:` need booleans; `<`/`>` compare numbers with numbers
  or strings with strings; `==` between a string and a number is an error rather than `false`;
  `+` adds numbers or concatenates strings. `nil + "x"` gives "x" (AliECS installs an `addNil`
  overload for `+` so that nil counts as an empty string).
* `/` always gives a float (division by zero gives ±Inf/NaN as in Go), `%` needs integers and
  truncates toward zero, integer `+ - *` wrap around at 64 bits like Go's `int`.
* Comparisons chain (`a < b < c` is `a < b && b < c`), `a not in b` negates, `??` coalesces nil,
  `?.` short-circuits on nil, `x | f(y)` is `f(x, y)`.

Scope conventions: `scope` is any `Mapping[str, object]`. Template variables are `str` values;
functions are Python callables (wrap a function in `ScopeFunction` if it must see the scope, as
`util.PrefixedOverride` does); namespaces such as `strings` or `json` are mappings of member names
(`Namespace` gives "unknown name strings.Foo" for a missing member, a plain dict yields nil like a
Go map) or objects whose public attributes are fields (`Up(1).Path`). Attributes starting with `_`
are never reachable.

Every error is an `ExprError` carrying the expression text and the 0-based character position of
the offending token; its `str()` reads like `unknown name "foo" at position 4 in "1 + foo"`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from aliecs.errors import AliecsError

__all__ = [
    "GO_SPACE",
    "ExprError",
    "ExprEvalError",
    "ExprSyntaxError",
    "IntRange",
    "Namespace",
    "Node",
    "Program",
    "ScopeFunction",
    "TemplateSyntaxError",
    "Token",
    "UnknownName",
    "compile_expression",
    "evaluate",
    "format_value",
    "go_float",
    "go_json",
    "parse",
    "render",
    "split_template",
    "tokenize",
    "type_name",
]

Scope = Mapping[str, Any]
_Eval = Callable[[Scope], Any]

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 63) - 1


# ==================================================================================================
# Errors


def _quote(text: str) -> str:
    """Double-quoted like Go's %q, so that errors show exactly which characters were involved."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class ExprError(AliecsError):
    """An expression could not be parsed or evaluated.

    `position` is the 0-based character offset in `expression`. When the expression came from a
    `{{ }}` tag, `render()` also sets `template` (the whole field) and `template_offset` (where the
    tag's expression starts in it).
    """

    def __init__(self, message: str, expression: str, position: int) -> None:
        self.message = message
        self.expression = expression
        self.position = position
        self.template: str | None = None
        self.template_offset: int | None = None
        super().__init__(message, expression, position)

    def __str__(self) -> str:
        return f"{self.message} at position {self.position} in {_quote(self.expression)}"


class ExprSyntaxError(ExprError):
    """The expression (or a template's `{{ }}` structure) is malformed."""


class TemplateSyntaxError(ExprSyntaxError):
    """A template field has a `{{` without a closing `}}`; `expression` is the whole field."""


class ExprEvalError(ExprError):
    """The expression is well formed but cannot be evaluated (types, missing names, failing calls)."""


class UnknownName(ExprEvalError):
    """A variable, function or namespace member is not in the scope; `name` says which one (the
    caller adds the role path)."""

    def __init__(self, name: str, expression: str, position: int) -> None:
        self.name = name
        super().__init__(f"unknown name {_quote(name)}", expression, position)


# ==================================================================================================
# Scope helpers


class Namespace(dict[str, Any]):
    """A named group of functions (`strings`, `json`, `util`…): a missing member is an unknown name
    (`strings.Foo`) instead of nil, so a typo in a function name is reported as such."""

    def __init__(self, name: str, members: Mapping[str, Any] | None = None) -> None:
        super().__init__(members or {})
        self.name = name

    def __repr__(self) -> str:
        return f"Namespace({self.name!r}, {sorted(self)})"


class ScopeFunction:
    """A function that needs the evaluation scope (e.g. `util.PrefixedOverride` reads other
    variables): it is called as `fn(scope, *args)`."""

    __slots__ = ("__name__", "fn")

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        self.fn = fn
        self.__name__ = name or getattr(fn, "__name__", "function")

    def __call__(self, scope: Scope, *args: Any) -> Any:
        return self.fn(scope, *args)

    def __repr__(self) -> str:
        return f"ScopeFunction({self.__name__})"


class IntRange(list[int]):
    """The result of `a..b`: Go's `[]int`, which AliECS prints with %v (`[1 2 3]`), not as JSON."""


# ==================================================================================================
# Tokenizer

_KEYWORD_OPERATORS = frozenset(
    {"in", "or", "and", "matches", "contains", "startsWith", "endsWith", "let", "if", "else", "not"}
)
_NEGATABLE = frozenset({"in", "matches", "contains", "startsWith", "endsWith"})


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token; `pos` is the 0-based offset of its first character."""

    kind: str  # "int", "float", "string", "ident", "op", "bracket", "eof"
    value: Any
    pos: int
    text: str

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of expression"
        return _quote(self.text)


def _is_space(ch: str) -> bool:
    return ch.isspace()


def _is_ident_start(ch: str) -> bool:
    return ch == "_" or ch == "$" or ch.isalpha()


def _is_ident_part(ch: str) -> bool:
    return ch == "_" or ch == "$" or ch.isalpha() or ch.isdecimal()


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}
_HEX = "0123456789abcdefABCDEF"


class _Lexer:
    def __init__(self, source: str) -> None:
        self.src = source
        self.n = len(source)
        self.tokens: list[Token] = []

    def error(self, message: str, pos: int) -> NoReturn:
        raise ExprSyntaxError(message, self.src, max(0, min(pos, self.n)))

    def emit(self, kind: str, value: Any, start: int, end: int) -> None:
        self.tokens.append(Token(kind, value, start, self.src[start:end]))

    def run(self) -> list[Token]:
        src, n = self.src, self.n
        i = 0
        while i < n:
            ch = src[i]
            if _is_space(ch):
                i += 1
            elif ch in "'\"":
                i = self.string(i, ch)
            elif ch == "`":
                end = src.find("`", i + 1)
                if end < 0:
                    self.error("literal not terminated", i)
                self.emit("string", src[i + 1 : end], i, end + 1)
                i = end + 1
            elif ch.isdecimal() and ch.isascii():
                i = self.number(i)
            elif ch == ".":
                if i + 1 < n and src[i + 1].isascii() and src[i + 1].isdecimal():
                    i = self.number(i)
                elif src.startswith("..", i):
                    self.emit("op", "..", i, i + 2)
                    i += 2
                else:
                    self.emit("op", ".", i, i + 1)
                    i += 1
            elif ch == "?":
                j = i + 2 if i + 1 < n and src[i + 1] in ".?" else i + 1
                self.emit("op", src[i:j], i, j)
                i = j
            elif ch == "/":
                if src.startswith("//", i):
                    end = src.find("\n", i)
                    i = n if end < 0 else end + 1
                elif src.startswith("/*", i):
                    end = src.find("*/", i + 2)
                    if end < 0:
                        self.error("unclosed comment", n)
                    i = end + 2
                else:
                    self.emit("op", "/", i, i + 1)
                    i += 1
            elif ch == "#":
                self.error("predicates and pointers (#) are not supported", i)
            elif ch in "|:":
                j = i + 2 if src.startswith(ch * 2, i) else i + 1
                self.emit("op", src[i:j], i, j)
                i = j
            elif ch in "([{)]}":
                self.emit("bracket", ch, i, i + 1)
                i += 1
            elif ch in ",;%+-^":
                self.emit("op", ch, i, i + 1)
                i += 1
            elif ch in "&!=*<>":
                j = i + 2 if i + 1 < n and src[i + 1] in "&=*" else i + 1
                self.emit("op", src[i:j], i, j)
                i = j
            elif _is_ident_part(ch):
                i = self.identifier(i)
            else:
                self.error(f"unrecognized character {_quote(ch)}", i)
        self.tokens.append(Token("eof", None, n, ""))
        return self.tokens

    def identifier(self, start: int) -> int:
        src, n = self.src, self.n
        i = start + 1
        while i < n and _is_ident_part(src[i]):
            i += 1
        word = src[start:i]
        if word not in _KEYWORD_OPERATORS:
            self.emit("ident", word, start, i)
            return i
        self.emit("op", word, start, i)
        if word == "not":
            # "not in", "not contains"…: the suffix is its own operator token.
            j = i
            while j < n and src[j] == " ":
                j += 1
            k = j
            while k < n and _is_ident_part(src[k]):
                k += 1
            if src[j:k] in _NEGATABLE:
                self.emit("op", src[j:k], j, k)
                return k
        return i

    def number(self, start: int) -> int:
        src, n = self.src, self.n
        i = start
        digits = "0123456789_"
        base = 10
        if src[i] == "0" and i + 1 < n and src[i + 1] in "xXoObB":
            base = {"x": 16, "o": 8, "b": 2}[src[i + 1].lower()]
            digits = {16: _HEX + "_", 8: "01234567_", 2: "01_"}[base]
            i += 2
        while i < n and src[i] in digits:
            i += 1
        is_float = False
        if i < n and src[i] == "." and not src.startswith("..", i):
            is_float = True
            i += 1
            while i < n and src[i] in digits:
                i += 1
        if i < n and src[i] in "eE" and base != 16:
            is_float = True
            i += 1
            if i < n and src[i] in "+-":
                i += 1
            while i < n and src[i] in digits:
                i += 1
        if i < n and _is_ident_part(src[i]):
            self.error(f"bad number syntax: {_quote(src[start : i + 1])}", i)
        text = src[start:i]
        clean = text.replace("_", "")
        if is_float and base == 10:
            try:
                value: Any = float(clean)
            except ValueError:
                self.error(f"invalid float literal: {_quote(text)}", start)
            if math.isinf(value):
                self.error("float literal is too large", start)
            self.emit("float", value, start, i)
        else:
            body = clean[2:] if base != 10 else clean
            try:
                value = int(body, base)
            except ValueError:
                self.error(f"invalid integer literal: {_quote(text)}", start)
            if value > _INT_MAX:
                self.error("integer literal is too large", start)
            self.emit("int", value, start, i)
        return i

    def string(self, start: int, quote: str) -> int:
        src, n = self.src, self.n
        out: list[str] = []
        i = start + 1
        while True:
            if i >= n or src[i] == "\n":
                self.error("literal not terminated", start)
            ch = src[i]
            if ch == quote:
                break
            if ch != "\\":
                out.append("\n" if ch == "\r" else ch)  # Go normalises raw newlines in literals
                i += 1
                continue
            if i + 1 >= n:
                self.error("literal not terminated", start)
            esc = src[i + 1]
            if esc in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[esc])
                i += 2
            elif esc == quote:
                out.append(quote)
                i += 2
            elif esc in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[esc]
                hexdigits = src[i + 2 : i + 2 + width]
                if len(hexdigits) != width or any(c not in _HEX for c in hexdigits):
                    self.error("invalid char escape", i)
                out.append(self.code_point(int(hexdigits, 16), i))
                i += 2 + width
            elif esc in "01234567":
                octal = src[i + 1 : i + 4]
                if len(octal) != 3 or any(c not in "01234567" for c in octal) or esc > "3":
                    self.error("invalid char escape", i)
                out.append(self.code_point(int(octal, 8), i))
                i += 4
            else:
                self.error("invalid char escape", i)
        self.emit("string", "".join(out), start, i + 1)
        return i + 1

    def code_point(self, value: int, pos: int) -> str:
        if value > 0x10FFFF:
            self.error("invalid char escape", pos)
        if 0xD800 <= value <= 0xDFFF:
            return "\ufffd"  # Go cannot encode surrogates either
        return chr(value)


def tokenize(expression: str) -> list[Token]:
    """The tokens of `expression` (ending with an "eof" token); raises `ExprSyntaxError`."""
    return _Lexer(expression).run()


# ==================================================================================================
# AST


@dataclass(frozen=True, slots=True)
class Node:
    """Base of the AST; `pos` is where the node's defining token starts."""

    pos: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: Any


@dataclass(frozen=True, slots=True)
class Identifier(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Compare(Node):
    """A comparison chain `a < b <= c`; each operand is evaluated once."""

    first: Node
    rest: tuple[tuple[str, int, Node], ...]  # (operator, operator position, operand)


@dataclass(frozen=True, slots=True)
class Conditional(Node):
    cond: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True)
class Member(Node):
    """`obj.name`, `obj[key]`, and their optional `?.` forms."""

    obj: Node
    key: Node
    optional: bool
    dotted: bool


@dataclass(frozen=True, slots=True)
class Chain(Node):
    """Delimits how far an optional `?.` short-circuits to nil."""

    inner: Node


@dataclass(frozen=True, slots=True)
class SliceNode(Node):
    obj: Node
    start: Node | None
    stop: Node | None


@dataclass(frozen=True, slots=True)
class Call(Node):
    callee: Node
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class BuiltinCall(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ArrayNode(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapNode(Node):
    pairs: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True)
class Let(Node):
    name: str
    value: Node
    body: Node


# ==================================================================================================
# Parser (mirrors expr's parser/parser.go: precedence climbing, comparisons chain, ternary at the
# lowest level)

_UNARY_PRECEDENCE = {"not": 50, "!": 50, "-": 90, "+": 90}
_BINARY_PRECEDENCE = {
    "|": 0,
    "or": 10,
    "||": 10,
    "and": 15,
    "&&": 15,
    "==": 20,
    "!=": 20,
    "<": 20,
    ">": 20,
    ">=": 20,
    "<=": 20,
    "in": 20,
    "matches": 20,
    "contains": 20,
    "startsWith": 20,
    "endsWith": 20,
    "..": 25,
    "+": 30,
    "-": 30,
    "*": 60,
    "/": 60,
    "%": 60,
    "**": 100,
    "^": 100,
    "??": 500,
}
_RIGHT_ASSOCIATIVE = frozenset({"**", "^"})
_CANONICAL = {"or": "||", "and": "&&", "not": "!", "^": "**"}


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# expr-lang builtins: names that are always builtins when called, whatever the scope holds.
_SUPPORTED_BUILTINS = _names(
    "len abs int float string trim trimPrefix trimSuffix upper lower split join hasPrefix hasSuffix "
    "keys values first last max min type"
)
# The other expr-lang builtins (predicates, dates, …) are rejected at parse time rather than being
# looked up in the scope, so that a template using them fails clearly.
_UNSUPPORTED_BUILTINS = _names(
    "all none any one filter map find findIndex findLast findLastIndex count sum groupBy sortBy "
    "reduce ceil floor round splitAfter replace repeat indexOf lastIndexOf mean median toJSON "
    "fromJSON toBase64 fromBase64 now duration date timezone get take toPairs fromPairs sort reverse "
    "uniq concat flatten bitand bitor bitxor bitnand bitnot bitshl bitshr bitushr"
)


class _Parser:
    """Recursive descent with precedence climbing over the token list, one instance per parse."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.tokens = tokenize(source)
        self.i = 0
        self.cur = self.tokens[0]

    # -- helpers

    def error(self, message: str, token: Token | None = None) -> NoReturn:
        tok = token or self.cur
        raise ExprSyntaxError(message, self.src, tok.pos)

    def unexpected(self, token: Token | None = None) -> NoReturn:
        tok = token or self.cur
        if tok.kind == "eof":
            self.error("unexpected end of expression", tok)
        self.error(f"unexpected token {tok.describe()}", tok)

    def advance(self) -> Token:
        tok = self.cur
        if self.i < len(self.tokens) - 1:
            self.i += 1
        self.cur = self.tokens[self.i]
        return tok

    def peek(self) -> Token:
        return self.tokens[min(self.i + 1, len(self.tokens) - 1)]

    def is_op(self, *values: str) -> bool:
        return self.cur.kind == "op" and (not values or self.cur.value in values)

    def is_bracket(self, value: str) -> bool:
        return self.cur.kind == "bracket" and self.cur.value == value

    def expect_op(self, value: str) -> Token:
        if not self.is_op(value):
            self.unexpected()
        return self.advance()

    def expect_bracket(self, value: str) -> Token:
        if not self.is_bracket(value):
            self.unexpected()
        return self.advance()

    # -- grammar

    def parse(self) -> Node:
        if self.cur.kind == "eof":
            self.error("empty expression")
        node = self.expression(0)
        if self.cur.kind != "eof":
            self.unexpected()
        return node

    def expression(self, precedence: int) -> Node:
        if precedence == 0 and self.is_op("let"):
            return self.let()
        left = self.primary()
        prev_op = ""
        while self.cur.kind == "op":
            op_tok = self.cur
            negate = op_tok.value == "not"
            if negate:
                suffix = self.peek()
                if suffix.kind != "op" or suffix.value not in _NEGATABLE:
                    self.unexpected(suffix)
                if _BINARY_PRECEDENCE[suffix.value] < precedence:
                    break
                self.advance()
                op_tok = self.cur
            op = op_tok.value
            prec = _BINARY_PRECEDENCE.get(op)
            if prec is None or prec < precedence:
                break
            self.advance()
            if op == "|":
                name = self.cur
                if name.kind != "ident":
                    self.unexpected()
                self.advance()
                left = self.call(name, [left])
                prev_op = op
                continue
            if prev_op == "??" and op != "??":
                self.error(
                    f"operator {op} and coalesce expressions (??) cannot be mixed; "
                    "wrap either in parentheses",
                    op_tok,
                )
            if prec == 20:
                left = self.comparison(left, op_tok, negate)
            else:
                right = self.expression(prec if op in _RIGHT_ASSOCIATIVE else prec + 1)
                left = Binary(op_tok.pos, _CANONICAL.get(op, op), left, right)
            prev_op = op
        if precedence == 0:
            left = self.conditional(left)
        return left

    def comparison(self, left: Node, op_tok: Token, negate: bool) -> Node:
        rest: list[tuple[str, int, Node]] = []
        op = ("not " if negate else "") + op_tok.value
        while True:
            right = self.expression(21)
            rest.append((op, op_tok.pos, right))
            if not (self.cur.kind == "op" and _BINARY_PRECEDENCE.get(self.cur.value) == 20):
                break
            op_tok = self.advance()
            op = op_tok.value
        return Compare(rest[0][1], left, tuple(rest))

    def conditional(self, node: Node) -> Node:
        while self.is_op("?"):
            q = self.advance()
            if self.is_op(":"):
                self.advance()
                then: Node = node
                otherwise = self.expression(0)
            else:
                then = self.expression(0)
                self.expect_op(":")
                otherwise = self.expression(0)
            node = Conditional(q.pos, node, then, otherwise)
        return node

    def let(self) -> Node:
        self.advance()
        name = self.cur
        if name.kind != "ident":
            self.unexpected()
        self.advance()
        self.expect_op("=")
        value = self.expression(0)
        self.expect_op(";")
        body = self.expression(0)
        return Let(name.pos, name.value, value, body)

    def primary(self) -> Node:
        tok = self.cur
        if tok.kind == "op" and tok.value in _UNARY_PRECEDENCE:
            self.advance()
            operand = self.expression(_UNARY_PRECEDENCE[tok.value])
            return self.postfix(Unary(tok.pos, _CANONICAL.get(tok.value, tok.value), operand))
        if self.is_bracket("("):
            self.advance()
            inner = self.expression(0)
            self.expect_bracket(")")
            return self.postfix(inner)
        if tok.kind == "op" and tok.value == ".":
            self.error("cannot use pointer accessor outside predicate")
        if tok.kind == "op" and tok.value == "::":
            self.advance()
            name = self.cur
            if name.kind != "ident":
                self.unexpected()
            self.advance()
            return self.postfix(self.call(name, []))
        return self.secondary()

    def secondary(self) -> Node:
        tok = self.cur
        node: Node
        if tok.kind == "ident":
            self.advance()
            if tok.value == "true":
                return Literal(tok.pos, True)
            if tok.value == "false":
                return Literal(tok.pos, False)
            if tok.value == "nil":
                return Literal(tok.pos, None)
            node = self.call(tok, []) if self.is_bracket("(") else Identifier(tok.pos, tok.value)
        elif tok.kind in ("int", "float"):
            self.advance()
            return Literal(tok.pos, tok.value)
        elif tok.kind == "string":
            self.advance()
            node = Literal(tok.pos, tok.value)
        elif self.is_bracket("["):
            node = self.array()
        elif self.is_bracket("{"):
            node = self.mapping()
        else:
            self.unexpected()
        return self.postfix(node)

    def call(self, name: Token, args: list[Node]) -> Node:
        ident = name.value
        if ident in _UNSUPPORTED_BUILTINS:
            self.error(f"builtin {ident}() is not supported", name)
        if ident in _SUPPORTED_BUILTINS:
            return BuiltinCall(name.pos, ident, tuple(self.arguments(args)))
        return Call(name.pos, Identifier(name.pos, ident), tuple(self.arguments(args)))

    def arguments(self, args: list[Node]) -> list[Node]:
        offset = len(args)
        self.expect_bracket("(")
        while not self.is_bracket(")"):
            if len(args) > offset:
                self.expect_op(",")
            if self.is_bracket(")"):
                break
            args.append(self.expression(0))
        self.expect_bracket(")")
        return args

    def array(self) -> Node:
        start = self.expect_bracket("[")
        items: list[Node] = []
        while not self.is_bracket("]"):
            if items:
                self.expect_op(",")
                if self.is_bracket("]"):
                    break
            items.append(self.expression(0))
        self.expect_bracket("]")
        return ArrayNode(start.pos, tuple(items))

    def mapping(self) -> Node:
        start = self.expect_bracket("{")
        pairs: list[tuple[Node, Node]] = []
        while not self.is_bracket("}"):
            if pairs:
                self.expect_op(",")
                if self.is_bracket("}"):
                    break
            tok = self.cur
            key: Node
            if tok.kind in ("int", "float", "ident"):
                self.advance()
                key = Literal(tok.pos, tok.text)
            elif tok.kind == "string":
                self.advance()
                key = Literal(tok.pos, tok.value)
            elif self.is_bracket("("):
                key = self.expression(0)
            else:
                self.error(
                    "a map key must be a quoted string, a number, an identifier, "
                    "or an expression in parentheses"
                )
            self.expect_op(":")
            pairs.append((key, self.expression(0)))
        self.expect_bracket("}")
        return MapNode(start.pos, tuple(pairs))

    def postfix(self, node: Node) -> Node:
        while self.cur.kind in ("op", "bracket"):
            tok = self.cur
            optional = tok.value == "?."
            if tok.value in (".", "?."):
                self.advance()
                prop = self.cur
                if optional and prop.kind == "bracket" and prop.value == "[":
                    node = self.index(node, optional=True)
                    continue
                if not (prop.kind == "ident" or (prop.kind == "op" and _is_identifier(prop.value))):
                    self.error("expected name", prop)
                self.advance()
                is_chain = isinstance(node, Chain)
                base = node.inner if isinstance(node, Chain) else node
                member: Node = Member(prop.pos, base, Literal(prop.pos, prop.value), optional, True)
                if self.is_bracket("("):
                    member = Call(prop.pos, member, tuple(self.arguments([])))
                node = Chain(member.pos, member) if (is_chain or optional) else member
            elif tok.kind == "bracket" and tok.value == "[":
                node = self.index(node, optional=False)
            else:
                break
        return node

    def index(self, node: Node, *, optional: bool) -> Node:
        bracket = self.expect_bracket("[")
        if self.is_op(":"):
            self.advance()
            stop = None if self.is_bracket("]") else self.expression(0)
            self.expect_bracket("]")
            return SliceNode(bracket.pos, node, None, stop)
        start = self.expression(0)
        if self.is_op(":"):
            self.advance()
            stop = None if self.is_bracket("]") else self.expression(0)
            self.expect_bracket("]")
            return SliceNode(bracket.pos, node, start, stop)
        self.expect_bracket("]")
        is_chain = isinstance(node, Chain)
        base = node.inner if isinstance(node, Chain) else node
        member = Member(bracket.pos, base, start, optional, False)
        return Chain(member.pos, member) if (is_chain or optional) else member


def _is_identifier(text: str) -> bool:
    return bool(text) and _is_ident_start(text[0]) and all(_is_ident_part(c) for c in text)


def parse(expression: str) -> Node:
    """The AST of `expression`; raises `ExprSyntaxError` with the position of the bad token."""
    return _parse_cached(expression)


@functools.lru_cache(maxsize=16384)
def _parse_cached(expression: str) -> Node:
    try:
        return _Parser(expression).parse()
    except RecursionError:
        raise ExprSyntaxError("expression too deeply nested", expression, 0) from None


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


# ==================================================================================================
# Public entry points


class Program:
    """A compiled expression; call it with a scope to evaluate. Obtain with `compile_expression`."""

    __slots__ = ("_run", "ast", "source")

    def __init__(self, source: str, ast: Node, run: _Eval) -> None:
        self.source = source
        self.ast = ast
        self._run = run

    def __call__(self, scope: Scope) -> Any:
        try:
            return self._run(scope)
        except _NilChain:  # pragma: no cover - every optional access is wrapped in a Chain
            return None
        except RecursionError:
            raise ExprEvalError("expression too deeply nested", self.source, 0) from None

    def __repr__(self) -> str:
        return f"Program({self.source!r})"


@functools.lru_cache(maxsize=16384)
def compile_expression(expression: str) -> Program:
    """Parse and compile `expression` (cached by text: templates are rendered thousands of times)."""
    ast = parse(expression)
    try:
        run = _Compiler(expression).compile(ast)
    except RecursionError:
        raise ExprSyntaxError("expression too deeply nested", expression, 0) from None
    return Program(expression, ast, run)


def evaluate(expression: str, scope: Scope) -> Any:
    """The value of `expression` in `scope` (no `{{ }}`: the whole string is the expression)."""
    return compile_expression(expression)(scope)


@functools.lru_cache(maxsize=16384)
def split_template(text: str) -> tuple[str | tuple[str, int], ...]:
    """Split a field like valyala/fasttemplate does: literal text, and `(expression, offset)` for
    each `{{ … }}` (the first `}}` after a `{{` closes it; offset is where the expression starts).

    Raises `TemplateSyntaxError` for a `{{` without a closing `}}`.
    """
    parts: list[str | tuple[str, int]] = []
    start = 0
    while True:
        open_at = text.find("{{", start)
        if open_at < 0:
            if start < len(text):
                parts.append(text[start:])
            return tuple(parts)
        if open_at > start:
            parts.append(text[start:open_at])
        close_at = text.find("}}", open_at + 2)
        if close_at < 0:
            raise TemplateSyntaxError("unterminated tag: {{ without a closing }}", text, open_at)
        parts.append((text[open_at + 2 : close_at], open_at + 2))
        start = close_at + 2


def render(text: str, scope: Scope) -> str:
    """Render a templated field: each `{{ expr }}` is evaluated in `scope` and replaced by its value
    formatted like AliECS does (`format_value`); text outside tags is kept verbatim.

    A string without `{{` is returned as is, without parsing. Errors are `ExprError`s whose
    `template`/`template_offset` locate the tag in `text`.
    """
    if "{{" not in text:
        return text
    out: list[str] = []
    for part in split_template(text):
        if isinstance(part, str):
            out.append(part)
            continue
        expression, offset = part
        try:
            value = compile_expression(expression)(scope)
            try:
                out.append(format_value(value))
            except ValueError as exc:  # a list that Go's JSON encoder rejects (NaN, functions)
                raise ExprEvalError(str(exc), expression, 0) from exc
        except ExprError as exc:
            exc.template, exc.template_offset = text, offset
            raise
    return "".join(out)
