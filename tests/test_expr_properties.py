"""Property tests of the expression language: arbitrary input never crashes the tokenizer, parser or
evaluator with anything but `ExprError` (whose position is within the expression), and generated
well-formed expressions evaluate to what Python computes for the same tree (with Go's 64-bit
integer wrap-around)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aliecs.workflow.expr import (
    ExprError,
    compile_expression,
    evaluate,
    go_float,
    go_json,
    parse,
    render,
)
from aliecs.workflow.functions import base_function_scope

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCOPE: dict[str, Any] = {
    **base_function_scope(),
    "x": 7,
    "y": -3,
    "s": "ab",
    "t": "xyz",
    "b": True,
    "items": ["a", "b"],
    "m": {"k": "v"},
    "none": None,
}

# Characters and fragments that make up real expressions, so that random input reaches deep into
# the parser instead of failing on the first character.
FRAGMENTS = [
    *"()[]{}.,:;?!+-*/%^<>=&|'\"` \t\n#$_0123456789abcxyz",
    "&&",
    "||",
    "==",
    "!=",
    "<=",
    ">=",
    "**",
    "??",
    "?.",
    "..",
    " in ",
    " not ",
    " contains ",
    " matches ",
    " startsWith ",
    "true",
    "false",
    "nil",
    "len(",
    "x",
    "s",
    "items",
    "m",
    "none",
    "strings.ToUpper(",
    "json.Unmarshal(",
    "0x1F",
    "1e3",
    ".5",
    "\\",
    "\\u00e9",
    "let ",
    "/*",
    "//",
    "é",
]

expression_like = st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join)


def _check_error(error: ExprError, expression: str) -> None:
    assert error.expression == expression
    assert 0 <= error.position <= len(expression)
    text = str(error)
    assert f"at position {error.position} in " in text


@FAST
@given(st.one_of(st.text(max_size=60), expression_like))
@example("((((((((((((((((((((((((((((((((((((((((((((((((((1" + ")" * 50)
@example("-" * 2000 + "1")
@example("[" * 600)
@example("'\\")
@example("1..")
def test_parser_only_raises_its_own_errors(expression: str) -> None:
    try:
        parse(expression)
    except ExprError as error:
        _check_error(error, expression)


@FAST
@given(expression_like)
def test_evaluation_only_raises_its_own_errors(expression: str) -> None:
    try:
        program = compile_expression(expression)
    except ExprError as error:
        _check_error(error, expression)
        return
    try:
        program(SCOPE)
    except ExprError as error:
        _check_error(error, expression)


@FAST
@given(st.text(max_size=80))
def test_render_only_raises_its_own_errors(text: str) -> None:
    try:
        result = render(text, SCOPE)
    except ExprError as error:
        if error.template is None:  # unterminated tag: positions refer to the whole field
            _check_error(error, text)
        else:
            assert error.template == text
            assert error.template_offset is not None
            _check_error(error, error.expression)
        return
    if "{{" not in text:
        assert result == text


# ==================================================================================================
# generated well-formed expressions

_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1


def go_wrap(value: int) -> int:
    return (value - _INT_MIN) % (1 << 64) + _INT_MIN


@dataclass(frozen=True)
class Gen:
    """An expression's text, its expected value, and its precedence (for minimal parentheses)."""

    text: str
    value: Any
    precedence: int


ATOM = 1000


def quote(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def wrap(child: Gen, needed: bool) -> str:
    return f"({child.text})" if needed else child.text


spaces = st.sampled_from(["", " ", "  "])

int_atoms = st.one_of(
    st.integers(0, 99).map(lambda v: Gen(str(v), v, ATOM)),
    st.just(Gen("x", 7, ATOM)),
    st.just(Gen("y", -3, ATOM)),
    st.integers(0, 255).map(lambda v: Gen(hex(v), v, ATOM)),
)
str_atoms = st.one_of(
    st.text(max_size=6).map(lambda v: Gen(quote(v), v, ATOM)),
    st.just(Gen("s", "ab", ATOM)),
    st.just(Gen("t", "xyz", ATOM)),
)
bool_atoms = st.one_of(
    st.booleans().map(lambda v: Gen("true" if v else "false", v, ATOM)),
    st.just(Gen("b", True, ATOM)),
)


def int_binary(children: st.SearchStrategy[Gen]) -> st.SearchStrategy[Gen]:
    ops = {"+": (30, lambda a, b: a + b), "-": (30, lambda a, b: a - b), "*": (60, lambda a, b: a * b)}

    @st.composite
    def build(draw: st.DrawFn) -> Gen:
        op = draw(st.sampled_from(sorted(ops)))
        precedence, fn = ops[op]
        left, right = draw(children), draw(children)
        sp = draw(spaces)
        left_text = wrap(left, left.precedence < precedence)
        right_text = wrap(right, right.precedence <= precedence)
        text = f"{left_text}{sp}{op}{sp}{right_text}"
        return Gen(text, go_wrap(fn(left.value, right.value)), precedence)

    @st.composite
    def negate(draw: st.DrawFn) -> Gen:
        child = draw(children)
        return Gen(f"-({child.text})", go_wrap(-child.value), ATOM)

    return st.one_of(build(), negate())


def int_exprs(max_leaves: int = 8) -> st.SearchStrategy[Gen]:
    return st.recursive(int_atoms, int_binary, max_leaves=max_leaves)


def str_exprs(max_leaves: int = 4) -> st.SearchStrategy[Gen]:
    @st.composite
    def concat(draw: st.DrawFn, children: st.SearchStrategy[Gen]) -> Gen:
        left, right = draw(children), draw(children)
        text = f"{wrap(left, left.precedence < 30)} + {wrap(right, right.precedence <= 30)}"
        return Gen(text, left.value + right.value, 30)

    return st.recursive(str_atoms, lambda children: concat(children), max_leaves=max_leaves)


SMALL_INTS = int_exprs(3)
SMALL_STRS = str_exprs(2)


@st.composite
def comparisons(draw: st.DrawFn) -> Gen:
    ops = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    op = draw(st.sampled_from(sorted(ops)))
    operands = draw(st.sampled_from(["int", "str"]))
    strategy = SMALL_INTS if operands == "int" else SMALL_STRS
    left, right = draw(strategy), draw(strategy)
    text = f"{wrap(left, left.precedence <= 20)} {op} {wrap(right, right.precedence <= 20)}"
    return Gen(text, ops[op](left.value, right.value), 20)


def bool_binary(children: st.SearchStrategy[Gen]) -> st.SearchStrategy[Gen]:
    @st.composite
    def logical(draw: st.DrawFn) -> Gen:
        op, word = draw(st.sampled_from([("&&", "and"), ("||", "or")]))
        spelled = draw(st.sampled_from([op, word]))
        precedence = 15 if op == "&&" else 10
        left, right = draw(children), draw(children)
        value = (left.value and right.value) if op == "&&" else (left.value or right.value)
        left_text = wrap(left, left.precedence < precedence)
        right_text = wrap(right, right.precedence <= precedence)
        text = f"{left_text} {spelled} {right_text}"
        return Gen(text, value, precedence)

    @st.composite
    def negation(draw: st.DrawFn) -> Gen:
        child = draw(children)
        spelled = draw(st.sampled_from(["!", "not "]))
        return Gen(f"{spelled}({child.text})", not child.value, ATOM)

    @st.composite
    def ternary(draw: st.DrawFn) -> Gen:
        cond, then, otherwise = draw(children), draw(children), draw(children)
        return Gen(
            f"({cond.text} ? {then.text} : {otherwise.text})",
            then.value if cond.value else otherwise.value,
            ATOM,
        )

    return st.one_of(logical(), negation(), ternary())


def bool_exprs() -> st.SearchStrategy[Gen]:
    return st.recursive(st.one_of(bool_atoms, comparisons()), bool_binary, max_leaves=6)


@FAST
@given(int_exprs())
def test_integer_expressions_evaluate_like_python(gen: Gen) -> None:
    result = evaluate(gen.text, SCOPE)
    assert result == gen.value, gen.text
    assert type(result) is int


@FAST
@given(str_exprs())
def test_string_expressions_evaluate_like_python(gen: Gen) -> None:
    assert evaluate(gen.text, SCOPE) == gen.value, gen.text


@FAST
@given(bool_exprs())
def test_boolean_expressions_evaluate_like_python(gen: Gen) -> None:
    result = evaluate(gen.text, SCOPE)
    assert result is gen.value, gen.text


@FAST
@given(int_exprs(), st.text(max_size=10).filter(lambda s: "{{" not in s and "}" not in s and "{" not in s))
def test_render_substitutes_tags_verbatim(gen: Gen, text: str) -> None:
    template = f"{text}{{{{ {gen.text} }}}}{text}"
    assert render(template, SCOPE) == f"{text}{gen.value}{text}"


@FAST
@given(st.text())
def test_string_literals_round_trip(text: str) -> None:
    assert evaluate(quote(text), {}) == text
    single = "'" + quote(text)[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"
    assert evaluate(single, {}) == text


@FAST
@given(st.integers(0, _INT_MAX))
def test_integer_literals_round_trip(number: int) -> None:
    assert evaluate(str(number), {}) == number
    assert evaluate(hex(number), {}) == number
    assert evaluate(f"-{number}", {}) == -number


@FAST
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_go_float_text_round_trips(value: float) -> None:
    text = go_float(value)
    assert float(text) == value
    assert math.copysign(1.0, float(text)) == math.copysign(1.0, value)
    assert "e" not in text or text.split("e")[1][0] in "+-"


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**15), 10**15),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


@FAST
@given(json_values)
def test_go_json_is_valid_json(value: Any) -> None:
    assert json.loads(go_json(value), parse_int=float) == value
