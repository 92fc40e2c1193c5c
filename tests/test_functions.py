"""The template function library behaves like AliECS's `MakeUtilFuncMap` (stack.go), including its
forgiving error handling, and is reachable from expressions under the same names."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from aliecs.workflow.expr import ExprEvalError, Namespace, UnknownName, evaluate, render
from aliecs.workflow.functions import (
    PROVIDER_NAMESPACES,
    atoi,
    base_function_scope,
    dump,
    is_falsy,
    is_truthy,
    itoa,
    json_marshal,
    json_sort,
    json_unmarshal,
    new_uid,
    nullable,
    prefixed_override,
    suffix_in_range,
    to_lower,
    to_upper,
    trim_quotes,
    trim_space,
)


def run(expression: str, **variables: Any) -> Any:
    return evaluate(expression, {**base_function_scope(), **variables})


# -- strings


@pytest.mark.parametrize(
    ("text", "expected"),
    [("123", 123), ("-456", -456), ("+7", 7), ("007", 7), ("abc", 0), ("", 0), (" 1", 0), ("1_000", 0)],
)
def test_atoi(text: str, expected: int) -> None:
    assert atoi(text) == expected


def test_atoi_clamps_out_of_range_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert atoi("99999999999999999999") == 2**63 - 1
        assert atoi("-99999999999999999999") == -(2**63)
        assert atoi("x") == 0
    assert "cannot convert" in caplog.text


def test_itoa() -> None:
    assert itoa(123) == "123"
    assert itoa(0) == "0"
    assert itoa(-456) == "-456"
    with pytest.raises(TypeError):
        itoa("1")
    with pytest.raises(TypeError):
        itoa(True)


@pytest.mark.parametrize(
    ("text", "expected"), [('"test"', "test"), ("test", "test"), ("", ""), ('"test', "test"), ('""x""', "x")]
)
def test_trim_quotes(text: str, expected: str) -> None:
    assert trim_quotes(text) == expected


def test_trim_space_and_case() -> None:
    assert trim_space("  test \n\t") == "test"
    assert trim_space("test test ") == "test test"
    assert trim_space("\u00a0x\u3000") == "x"
    assert to_upper("Test 1") == "TEST 1"
    assert to_lower("TeST") == "test"
    assert to_upper("straße") == "STRAßE"  # Go maps rune by rune, never to several runes


@pytest.mark.parametrize("text", ["true", "TRUE", "yes", "y", "1", "on", "ok", " Yes ", "OK"])
def test_truthy(text: str) -> None:
    assert is_truthy(text) is True
    assert is_falsy(text) is False


@pytest.mark.parametrize("text", ["false", "FALSE", "no", "n", "0", "off", "none", "", "  ", " None "])
def test_falsy(text: str) -> None:
    assert is_falsy(text) is True
    assert is_truthy(text) is False


@pytest.mark.parametrize("text", ["truthy", "2", "maybe", "enabled"])
def test_neither_truthy_nor_falsy(text: str) -> None:
    assert is_truthy(text) is False
    assert is_falsy(text) is False


def test_string_functions_reject_non_strings() -> None:
    for function in (trim_quotes, trim_space, to_upper, to_lower, is_truthy, is_falsy, atoi):
        with pytest.raises(TypeError):
            function(1)


# -- json


def test_json_unmarshal_decodes_numbers_as_floats_like_go() -> None:
    assert json_unmarshal('{"key": "value"}') == {"key": "value"}
    assert json_unmarshal("[1, 2.5, true, null]") == [1.0, 2.5, True, None]
    assert type(json_unmarshal("[1]")[0]) is float
    assert json_unmarshal('"text"') == "text"


@pytest.mark.parametrize("text", ["", "bad", "[1,", "NaN", "[Infinity]", "1e999", "[1] x"])
def test_json_unmarshal_of_invalid_json_is_nil(text: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert json_unmarshal(text) is None
    assert "json.Unmarshal" in caplog.text


def test_json_marshal_like_go() -> None:
    assert json_marshal({"key": "value"}) == '{"key":"value"}'
    assert json_marshal({"b": [1.0, 2], "a": None}) == '{"a":null,"b":[1,2]}'
    assert json_marshal("<&>") == '"\\u003c\\u0026\\u003e"'
    assert json_marshal(None) == "null"


def test_json_marshal_of_unencodable_value_is_empty(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert json_marshal(float("nan")) == ""
        assert json_marshal([len]) == ""
    assert "json.Marshal" in caplog.text


def test_json_sort() -> None:
    assert json_sort(["TPC", "ITS", "MCH", "FT0"]) == ["FT0", "ITS", "MCH", "TPC"]
    assert json_sort([3.0, 1.0, 2.0]) == [1.0, 2.0, 3.0]
    assert json_sort([]) == []
    assert json_sort(None) is None
    original = ["b", "a"]
    assert json_sort(original) == ["a", "b"]
    assert original == ["b", "a"]
    with pytest.raises(TypeError):
        json_sort("ab")


# -- uid


def test_uid_new_is_unique_base58_like_environment_ids() -> None:
    ids = [new_uid() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for uid in ids[:50]:
        assert re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{10,12}", uid), uid
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

    def decode(uid: str) -> int:
        number = 0
        for ch in uid:
            number = number * 58 + alphabet.index(ch)
        return number

    numbers = [decode(uid) for uid in ids]
    assert numbers == sorted(numbers)  # Sonyflake ids grow with time
    # 39 bits of 10 ms ticks since 2009-11-10 23:00 UTC, then 8 bits sequence, 16 bits machine.
    assert numbers[0] >> 24 > (2024 - 2009) * 365 * 24 * 3600 * 100


# -- util


def test_prefixed_override() -> None:
    stack = {
        "test_var": "test_value",
        "prefix_var": "prefixed_value",
        "fallback_var": "fallback_value",
        "prefixed_none_fallback_var": "none",
        "blank_var": "  ",
        "func_var": len,
    }
    assert prefixed_override(stack, "var", "prefix") == "prefixed_value"
    assert prefixed_override(stack, "fallback_var", "nonexistent_prefix") == "fallback_value"
    assert prefixed_override(stack, "fallback_var", "prefixed_none") == "fallback_value"
    assert prefixed_override(stack, "nonexistent_fallback_var", "prefix") == ""
    assert prefixed_override(stack, "var", "blank") == ""
    assert prefixed_override({"x": "none"}, "x", "p") == ""
    assert prefixed_override(stack, "var", "func") == ""


def test_prefixed_override_sees_the_expression_scope() -> None:
    variables = {"qc_dpl_command": "default-cmd", "glo_qc_dpl_command": "glo-cmd", "detector": "TPC"}
    assert run("util.PrefixedOverride('qc_dpl_command', 'glo')", **variables) == "glo-cmd"
    assert run("util.PrefixedOverride( 'qc_dpl_command', strings.ToLower( detector ) )", **variables) == (
        "default-cmd"
    )
    assert run("PrefixedOverride('missing', 'glo')", **variables) == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("test5", "test", "1", "10"), "true"),
        (("test15", "test", "1", "10"), "false"),
        (("other5", "test", "1", "10"), "false"),
        (("test", "test", "1", "10"), "false"),
        (("test", "test", "a", "10"), "false"),
        (("test5", "test", "1", "b"), "false"),
        (("alio2-cr1-flp001", "alio2-cr1-flp", "001", "072"), "true"),
        (("alio2-cr1-flp072", "alio2-cr1-flp", "001", "072"), "true"),
        (("alio2-cr1-flp073", "alio2-cr1-flp", "001", "072"), "false"),
        (("alio2-cr1-flp145", "alio2-cr1-flp", "073", "144"), "false"),
        (("5", "", "1", "10"), "false"),
        (("test-1", "test", "-5", "0"), "true"),
    ],
)
def test_suffix_in_range_returns_text(args: tuple[str, str, str, str], expected: str) -> None:
    assert suffix_in_range(*args) == expected


def test_nullable() -> None:
    assert nullable(None) == ""
    assert nullable("test") == "test"
    with pytest.raises(TypeError):
        nullable(1)


def test_dump_writes_and_returns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "dump.txt"
    assert dump("payload", str(target)) == "payload"
    assert target.read_text() == "payload"
    with caplog.at_level(logging.WARNING):
        assert dump("payload", str(tmp_path / "missing-dir" / "x")) == "payload"
    assert "could not dump" in caplog.text


# -- the scope


def test_base_scope_has_namespaces_and_legacy_aliases() -> None:
    scope = base_function_scope()
    for name in ("strings", "json", "uid", "util"):
        assert isinstance(scope[name], Namespace)
    assert set(scope["strings"]) == {
        "Atoi",
        "Itoa",
        "TrimQuotes",
        "TrimSpace",
        "ToUpper",
        "ToLower",
        "IsTruthy",
        "IsFalsy",
    }
    assert set(scope["json"]) == {"Unmarshal", "Deserialize", "Marshal", "Serialize", "Sort"}
    assert set(scope["util"]) == {"PrefixedOverride", "Dump", "Nullable", "SuffixInRange"}
    for legacy in ("FromJson", "ToJson", "NewID", "IsFalsy", "ToLower", "SuffixInRange", "PrefixedOverride"):
        assert legacy in scope
    assert not set(PROVIDER_NAMESPACES) & set(scope)
    assert base_function_scope() is not base_function_scope()


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("strings.Atoi('42') + 1", 43),
        ("strings.Itoa(42)", "42"),
        ("strings.TrimQuotes('\"x\"')", "x"),
        ("strings.IsTruthy('on')", True),
        ("!strings.IsFalsy(value)", True),
        ("IsFalsy('none')", True),
        ("json.Deserialize('[1]')[0]", 1.0),
        ("json.Serialize(['a'])", '["a"]'),
        ("ToJson(FromJson('{\"a\": 1}'))", '{"a":1}'),
        ("json.Unmarshal('bad') == nil", True),
        ("util.SuffixInRange('flp5', 'flp', '1', '9') == 'true'", True),
        ("util.Nullable(nil)", ""),
        ("len(uid.New()) > 8", True),
        ("NewID() != NewID()", True),
    ],
)
def test_functions_from_expressions(expression: str, expected: Any) -> None:
    assert run(expression, value="x") == expected


def test_render_with_functions_matches_corpus_usage() -> None:
    scope = {**base_function_scope(), "detectors": '["TPC","ITS","MCH"]'}
    assert render("{{ json.Marshal(json.Sort(json.Unmarshal(detectors))) }}", scope) == '["ITS","MCH","TPC"]'
    assert render("{{ json.Sort(json.Unmarshal(detectors)) }}", scope) == '["ITS","MCH","TPC"]'
    assert render("{{ json.Unmarshal('[1, 2.5]') }}", scope) == "[1,2.5]"
    assert render("{{ strings.Atoi('3') }}", scope) == "3"


def test_wrong_argument_types_are_expression_errors() -> None:
    with pytest.raises(
        ExprEvalError, match=r"strings\.ToUpper\(\): ToUpper takes a string argument, got int"
    ):
        run("strings.ToUpper(1)")
    with pytest.raises(ExprEvalError, match=r"strings\.Itoa\(\)"):
        run("strings.Itoa('1')")
    with pytest.raises(ExprEvalError, match="takes 1 positional argument"):
        run("strings.ToUpper('a', 'b')")
    with pytest.raises(UnknownName, match=r'"strings\.Nope"'):
        run("strings.Nope('a')")


def test_extra_namespaces_are_the_extension_point() -> None:
    inventory = {"DetectorForHost": lambda host: "TPC" if host.startswith("flp") else "ITS"}
    scope = base_function_scope({"inventory": inventory, "GetConfig": lambda path: "{}"})
    assert isinstance(scope["inventory"], Namespace)
    assert evaluate("inventory.DetectorForHost('flp001')", scope) == "TPC"
    assert evaluate("GetConfig('x')", scope) == "{}"
    with pytest.raises(UnknownName, match=r'"inventory\.Missing"'):
        evaluate("inventory.Missing('x')", scope)


def test_extra_namespaces_merge_into_existing_ones() -> None:
    scope = base_function_scope({"strings": {"Reverse": lambda s: s[::-1]}})
    assert evaluate("strings.Reverse('abc') + strings.ToUpper('x')", scope) == "cbaX"
    assert "Reverse" not in base_function_scope()["strings"]
