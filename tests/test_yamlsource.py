"""YAML loading keeps scalars as source text (like Go's decoding into strings), knows `!public`, and
reports positions; checked on small documents and on every template of the ControlWorkflows corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from aliecs.workflow.yamlsource import (
    PublicScalar,
    PublicVar,
    TemplateSourceError,
    load_yaml,
    location,
    position,
    to_plain,
)

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "controlworkflows"
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS} (see README, Development)"
)


def corpus_templates() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(CORPUS.glob("workflows/*.yaml")) + sorted(CORPUS.glob("tasks/*.yaml"))


def scalars(node: Any) -> list[Any]:
    """Every leaf of a loaded tree (keys included)."""
    if isinstance(node, dict):
        out: list[Any] = []
        for key, value in node.items():
            out.append(key)
            out.extend(scalars(value))
        return out
    if isinstance(node, list):
        return [leaf for item in node for leaf in scalars(item)]
    return [node]


# -- scalars stay text


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("false", "false"),
        ("true", "true"),
        ("yes", "yes"),
        ("0x0", "0x0"),
        ("0755", "0755"),
        ("1715236056769", "1715236056769"),
        ("-81", "-81"),
        ("0.15", "0.15"),
        ("1e3", "1e3"),
        (".inf", ".inf"),
        ("2024-01-01", "2024-01-01"),
        ('"quoted"', "quoted"),
        ("'single'", "single"),
        ("'it''s'", "it's"),
        ('"a\\tb"', "a\tb"),
        ("host-{{ it }}", "host-{{ it }}"),
        ('"{{ Up(2).Path }}.readout:readout"', "{{ Up(2).Path }}.readout:readout"),
        ("!!int 5", "5"),
        ("!!bool true", "true"),
        ("!!str 07", "07"),
    ],
)
def test_scalars_keep_their_source_text(source: str, expected: str) -> None:
    value = load_yaml(f"key: {source}\n", "t.yaml")["key"]
    assert value == expected
    assert type(value) is str


@pytest.mark.parametrize("source", ["key:", "key: ~", "key: null", "key: Null", "key: NULL", "key: !!null"])
def test_null_becomes_empty_string_like_go(source: str) -> None:
    assert load_yaml(source + "\n", "t.yaml")["key"] == ""


def test_quoted_null_stays_text() -> None:
    assert load_yaml('key: "null"\n', "t.yaml")["key"] == "null"


def test_folded_block_is_folded_as_yaml_does() -> None:
    text = (
        "cmd: >-\n"
        "  source /etc/profile.d/modules.sh && MODULEPATH={{ modulepath }} module load Readout &&\n"
        "  o2-readout-exe\n"
        "\n"
        "  next paragraph\n"
        "keep: |\n"
        "  line 1\n"
        "  line 2\n"
    )
    doc = load_yaml(text, "t.yaml")
    assert doc["cmd"] == (
        "source /etc/profile.d/modules.sh && MODULEPATH={{ modulepath }} module load Readout && "
        "o2-readout-exe\nnext paragraph"
    )
    assert type(doc["cmd"]) is str
    assert doc["keep"] == "line 1\nline 2\n"
    assert type(doc["keep"]) is str


def test_flow_sequences_and_nested_structures() -> None:
    doc = load_yaml('env: ["O2_DETECTOR={{ detector }}", 1, false]\nmap: {a: 1, b: [x]}\n', "t.yaml")
    assert to_plain(doc) == {
        "env": ["O2_DETECTOR={{ detector }}", "1", "false"],
        "map": {"a": "1", "b": ["x"]},
    }
    assert isinstance(doc, CommentedMap)
    assert isinstance(doc["env"], CommentedSeq)


def test_merge_keys_still_merge() -> None:
    doc = load_yaml("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n", "t.yaml")
    assert to_plain(doc["m"]) == {"x": "1", "y": "3"}


def test_empty_document_is_an_empty_mapping() -> None:
    assert load_yaml("", "t.yaml") == {}
    assert load_yaml("# only a comment\n", "t.yaml") == {}


# -- !public


def test_public_scalars_keep_text_and_flag() -> None:
    doc = load_yaml('name: !public readout-dataflow\ndescription: !public "Main workflow"\n', "t.yaml")
    name = doc["name"]
    assert isinstance(name, PublicScalar)
    assert name == "readout-dataflow"
    assert name.public is True
    assert str(name) == "readout-dataflow"
    assert type(str(name)) is str
    assert doc["description"] == "Main workflow"
    assert isinstance(to_plain(doc)["name"], PublicScalar)


def test_public_mapping_yields_public_var_with_metadata_as_written() -> None:
    text = (
        "defaults:\n"
        "  dcs_enabled: !public\n"
        '    value: "false"\n'
        "    type: bool\n"
        '    label: "DCS"\n'
        "    description: Enable DCS\n"
        "    widget: checkBox\n"
        "    panel: General_Configuration\n"
        "    index: 0\n"
        '    visibleif: $$trg_enabled === "true"\n'
        "    values: [a, b]\n"
        "    rows: 3\n"
        "    enabledif: x\n"
        "    custom: kept\n"
        "  plain: 1\n"
    )
    doc = load_yaml(text, "t.yaml")
    var = doc["defaults"]["dcs_enabled"]
    assert isinstance(var, PublicVar)
    assert var == PublicVar(
        value="false",
        type="bool",
        label="DCS",
        description="Enable DCS",
        widget="checkBox",
        panel="General_Configuration",
        values=["a", "b"],
        index="0",
        rows="3",
        visibleif='$$trg_enabled === "true"',
        enabledif="x",
        extra={"custom": "kept"},
    )
    # Where the tagged mapping starts: at the tag itself.
    assert (var.line, var.column) == (2, 16)
    assert position(var) == (2, 16)
    assert to_plain(doc)["defaults"]["dcs_enabled"] is var


def test_public_var_without_value_has_empty_value() -> None:
    var = load_yaml("v: !public\n  type: string\n", "t.yaml")["v"]
    assert var.value == ""
    assert var.type == "string"


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        ("v: !public [a, b]\n", "!public applies to a mapping or a scalar", 1),
        ("v: !public\n  value: [a]\n", "must be a scalar", 2),
        ("v: !pubilc x\n", "unknown tag !pubilc", 1),
        ("v: !!binary aGVsbG8=\n", "unknown tag", 1),
        ("v: !!set {a, b}\n", "unknown tag", 1),
    ],
)
def test_bad_tags_are_clear_errors(text: str, fragment: str, line: int) -> None:
    with pytest.raises(TemplateSourceError) as info:
        load_yaml(text, "t.yaml")
    assert fragment in info.value.message
    assert info.value.line == line


# -- positions


def test_positions_of_keys_values_and_items() -> None:
    text = "name: x\nroles:\n  - name: a\n    task:\n      load: readout\n  - name: b\n"
    doc = load_yaml(text, "wf.yaml")
    assert position(doc) == (1, 1)
    assert position(doc, "name") == (1, 1)
    assert position(doc, "name", value=True) == (1, 7)
    assert position(doc, "roles") == (2, 1)
    roles = doc["roles"]
    assert position(roles, 0) == (3, 5)
    assert position(roles, 1) == (6, 5)
    assert position(roles[0], "task") == (4, 5)
    assert position(roles[0]["task"], "load") == (5, 7)
    assert location("wf.yaml", roles[0]["task"], "load") == "wf.yaml:5:7"


def test_unknown_positions_are_none() -> None:
    doc = load_yaml("a: 1\n", "t.yaml")
    assert position(doc, "missing") is None
    assert position(doc["a"]) is None
    assert position({"a": 1}, "a") is None
    assert position(doc["a"], 0) is None
    assert location("t.yaml", doc, "missing") == "t.yaml"


# -- errors


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("a: [1, 2\n", 2, 1),
        ("roles:\n  - name: x\n   bad: 1\n", 3, 4),
        ("a: 1\na: 2\n", 2, 1),
        ("a: b\n---\nc: d\n", 2, 1),
        ('a: "unterminated\n', 2, 1),
        ("a:\n\t- x\n", 2, 1),
    ],
)
def test_broken_yaml_reports_file_line_and_column(text: str, line: int, column: int) -> None:
    with pytest.raises(TemplateSourceError) as info:
        load_yaml(text, "workflows/broken.yaml")
    error = info.value
    assert error.file == "workflows/broken.yaml"
    assert (error.line, error.column) == (line, column)
    assert "\n" not in error.message
    assert str(error).startswith(f"workflows/broken.yaml:{line}:{column}: ")


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("a: 1\nb: \x00x\n", 2, 4, "unacceptable character #x0000"),
        ("- &x [*x]\n", 1, 7, "anchor 'x' value contains itself"),
        ("a: &x {b: *x}\n", 1, 11, "anchor 'x' value contains itself"),
        ("a: *nope\n", 1, 4, "undefined alias"),
    ],
)
def test_reader_and_alias_errors(text: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(TemplateSourceError) as info:
        load_yaml(text, "t.yaml")
    assert (info.value.line, info.value.column) == (line, column)
    assert fragment in info.value.message


def test_a_failed_load_leaves_nothing_behind() -> None:
    for broken in ("a: &x [1]\nb: !foo x\n", "a: &x [1]\nb: &y [*y]\n", "a: &x [1]\nb: [\n"):
        with pytest.raises(TemplateSourceError):
            load_yaml(broken, "broken.yaml")
        with pytest.raises(TemplateSourceError, match="undefined alias"):
            load_yaml("c: *x\n", "next.yaml")
    assert to_plain(load_yaml("ok: 1\n", "next.yaml")) == {"ok": "1"}


def test_anchors_can_be_redefined_like_in_go() -> None:
    doc = load_yaml("a: &x [1]\nb: *x\nc: &x [2]\nd: *x\n", "t.yaml")
    assert to_plain(doc) == {"a": ["1"], "b": ["1"], "c": ["2"], "d": ["2"]}


YAML_FRAGMENTS = [
    *"ab:- \n\t{}[],'\"!&*|>#%@`?~\\",
    "!public",
    "!!int",
    "<<",
    "---",
    "...",
    "\x00",
    "é",
    "key: ",
    "  - ",
    "&a ",
    "*a",
    "%YAML 1.1\n",
]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(YAML_FRAGMENTS), max_size=30).map("".join)))
def test_any_text_loads_or_raises_template_source_error(text: str) -> None:
    try:
        document = load_yaml(text, "fuzz.yaml")
    except TemplateSourceError as error:
        assert error.file == "fuzz.yaml"
        assert error.line >= 0 and error.column >= 0
        assert "\n" not in error.message
        return
    for leaf in scalars(to_plain(document)):
        assert isinstance(leaf, (str, PublicVar))


def test_to_plain_gives_builtin_containers() -> None:
    doc = load_yaml("a:\n  b: [1, {c: d}]\n", "t.yaml")
    plain = to_plain(doc)
    assert type(plain) is dict
    assert type(plain["a"]) is dict
    assert type(plain["a"]["b"]) is list
    assert type(plain["a"]["b"][1]) is dict
    assert plain == {"a": {"b": ["1", {"c": "d"}]}}


# -- the real corpus


@needs_corpus
def test_corpus_is_present() -> None:
    assert len(corpus_templates()) >= 20


@needs_corpus
@pytest.mark.parametrize("path", corpus_templates(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_corpus_template_loads_with_text_scalars(path: Path) -> None:
    doc = load_yaml(path.read_text(encoding="utf-8"), str(path))
    assert isinstance(doc, CommentedMap)
    assert position(doc, "name") == (1, 1)
    for leaf in scalars(to_plain(doc)):
        assert isinstance(leaf, (str, PublicVar)), (path, leaf)
        if isinstance(leaf, PublicVar):
            assert isinstance(leaf.value, str)
    # The root name equals the file name in every corpus template.
    assert str(doc["name"]) == path.stem


@needs_corpus
def test_corpus_readout_dataflow_public_variables() -> None:
    path = CORPUS / "workflows" / "readout-dataflow.yaml"
    doc = load_yaml(path.read_text(encoding="utf-8"), str(path))
    assert isinstance(doc["name"], PublicScalar)
    assert isinstance(doc["description"], PublicScalar)
    defaults = doc["defaults"]
    public = {k: v for k, v in defaults.items() if isinstance(v, PublicVar)}
    assert len(public) > 100
    assert public["dcs_enabled"].value == "false"
    assert public["dcs_enabled"].widget == "checkBox"
    # The two untagged mapping defaults the survey found (they vanish in AliECS).
    assert isinstance(defaults["foc_dpl_workflow"], CommentedMap)
    assert isinstance(defaults["ctp_readout_host"], CommentedMap)


@needs_corpus
def test_corpus_unquoted_numbers_keep_their_text() -> None:
    path = CORPUS / "workflows" / "tpc-idc-sac-cmv-full-split-proxy-trigger.yaml"
    doc = to_plain(load_yaml(path.read_text(encoding="utf-8"), str(path)))
    numbers = {k: v for k, v in doc["defaults"].items() if v.lstrip("-").isdigit()}
    assert numbers, doc["defaults"]
    assert any(v.startswith("-") for v in numbers.values())


def test_a_key_ruamel_cannot_hash_is_a_clear_template_error() -> None:
    # Found by the fuzz above: a list holding a mapping as a key, "unhashable type: 'CommentedMap'".
    with pytest.raises(TemplateSourceError, match=r"complex\.yaml.*mapping key must not hold a mapping"):
        load_yaml("? - :", "complex.yaml")
