"""The `{{ }}` expression language of workflow and task templates.

The package, one module per stage: `lexer` (tokens), `parser` (syntax tree in `nodes`), `compiler`
(closures over the scope), `builtins`, `goformat` (values printed as Go prints them), `errors`,
`scope`; this module has the public entry points.

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

import functools
from typing import Any

from aliecs.workflow.expr.builtins import GO_SPACE
from aliecs.workflow.expr.compiler import _Compiler, _NilChain
from aliecs.workflow.expr.errors import (
    ExprError,
    ExprEvalError,
    ExprSyntaxError,
    Scope,
    TemplateSyntaxError,
    UnknownName,
    _Eval,
)
from aliecs.workflow.expr.goformat import format_value, go_float, go_json, type_name
from aliecs.workflow.expr.lexer import Token, tokenize
from aliecs.workflow.expr.nodes import Node
from aliecs.workflow.expr.parser import parse
from aliecs.workflow.expr.scope import IntRange, Namespace, ScopeFunction

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
