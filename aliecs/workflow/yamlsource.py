"""YAML loading for workflow and task templates that keeps scalars as their source text.

AliECS decodes templates with Go's yaml.v3 into `string` fields, so `false` stays "false", `0x0`
stays "0x0" and `1715236056769` stays "1715236056769"; a null value (`key:`, `~`, `null`) decodes to
the empty string. A default YAML loader would turn those into bool/int/None and `str()` would then
give "False", "0" or "None", which silently changes what reaches a task's command line. This
loader therefore resolves every plain scalar to a string, with two exceptions kept from YAML:
null-like scalars become "" and `<<` merge keys still merge.

The `!public` tag marks what the GUI shows: on a mapping (a defaults/vars entry) it yields a
`PublicVar`, on a scalar (the root `name` or `description`) a `PublicScalar`. Any other custom tag
is an error instead of being dropped silently, because a typo such as `!pubilc` would otherwise
change which variables exist.

Mappings and sequences are ruamel's `CommentedMap`/`CommentedSeq`, which remember where each key
and item was written; `position()` and `location()` turn that into 1-based (line, column) for
error messages. `to_plain()` converts a loaded tree into dicts, lists and strings once positions
are no longer needed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tag import Tag

from aliecs.errors import AliecsError
from aliecs.workflow.limits import YAML_DEPTH_ENV, YAML_NODES_ENV, TemplateLimits

__all__ = [
    "PUBLIC_VAR_FIELDS",
    "PublicScalar",
    "PublicVar",
    "TemplateSourceError",
    "load_yaml",
    "location",
    "position",
    "to_plain",
]


class TemplateSourceError(AliecsError):
    """A template file is not valid YAML (or uses a tag we do not know).

    Carries the file, the 1-based line and column, and a one-line message, so that an operator can
    open the file at the right place.
    """

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        super().__init__(f"{file}:{line}:{column}: {message}")


class PublicScalar(str):
    """A scalar tagged `!public` (a workflow's `name` or `description`): the text, marked public.

    It is a `str`, so code that only needs the text can ignore the marker; `str(x)` gives a plain
    string.
    """

    __slots__ = ()

    public = True

    def __repr__(self) -> str:
        return f"PublicScalar({str.__repr__(self)})"


# The metadata keys of a `!public` variable, as the GUI reads them (core/repos/repoutils.go VarSpec).
PUBLIC_VAR_FIELDS = (
    "value",
    "type",
    "label",
    "description",
    "widget",
    "panel",
    "values",
    "index",
    "rows",
    "visibleif",
    "enabledif",
)


@dataclass
class PublicVar:
    """A defaults/vars entry tagged `!public`: only `value` matters to the core, the rest is GUI
    metadata kept exactly as written (strings, and a list of strings for `values`).

    `line`/`column` are where the tagged mapping starts (1-based, 0 when unknown); keys outside the
    known set are kept in `extra` rather than dropped.
    """

    value: str = ""
    type: str = ""
    label: str = ""
    description: str = ""
    widget: str = ""
    panel: str = ""
    values: list[Any] = field(default_factory=list)
    index: str = ""
    rows: str = ""
    visibleif: str = ""
    enabledif: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


# --------------------------------------------------------------------------------------------------
# ruamel plumbing

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TEXT = re.compile(r"~|null|Null|NULL|")


class _TextResolver(VersionedResolver):  # type: ignore[misc]
    """Resolves every plain scalar to a string, except null-like ones and the `<<` merge key."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode:
            if implicit[0]:
                if _NULL_TEXT.fullmatch(value):
                    return Tag(suffix=_NULL_TAG)
                if value == "<<":
                    return Tag(suffix=_MERGE_TAG)
            return self.DEFAULT_SCALAR_TAG
        if kind is SequenceNode:
            return self.DEFAULT_SEQUENCE_TAG
        return self.DEFAULT_MAPPING_TAG


class _Composer(Composer):  # type: ignore[misc]
    """Rejects an alias used inside its own anchor's value (`&x [*x]`), as Go's yaml.v3 does,
    instead of building a self-containing structure; bounds nesting depth and the size a value
    reaches once its aliases are expanded (`TemplateLimits`), before anything walks the tree.

    Each composed node's expanded size (itself plus its children, an alias counting as the whole
    value it names) is kept in `_local.weights` by node identity, so the check costs one addition
    per node however many times an anchor is reused.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        limits: TemplateLimits = _local.limits
        depth = _local.depth + 1
        if depth > limits.yaml_depth:
            raise ComposerError(
                None,
                None,
                f"nested deeper than {limits.yaml_depth} levels (limit {YAML_DEPTH_ENV})",
                self.parser.peek_event().start_mark,
            )
        _local.depth = depth
        try:
            node = self._compose_checked(parent, index)
        finally:
            _local.depth = depth - 1
        weights: dict[int, int] = _local.weights
        if id(node) not in weights:
            weight = 1
            if isinstance(node, SequenceNode):
                weight += sum(weights.get(id(item), 1) for item in node.value)
            elif isinstance(node, MappingNode):
                weight += sum(weights.get(id(k), 1) + weights.get(id(v), 1) for k, v in node.value)
            if weight > limits.yaml_nodes:
                raise ComposerError(
                    None,
                    None,
                    f"this value expands to more than {limits.yaml_nodes} nodes through its aliases "
                    f"(limit {YAML_NODES_ENV})",
                    node.start_mark,
                )
            weights[id(node)] = weight
        return node

    def _compose_checked(self, parent: Any, index: Any) -> Any:
        composing: set[str] = self.__dict__.setdefault("_composing", set())
        self.warn_double_anchors = False  # Go accepts a redefined anchor silently
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            if event.anchor in composing:
                raise ComposerError(
                    None, None, f"anchor {event.anchor!r} value contains itself", event.start_mark
                )
            return super().compose_node(parent, index)
        anchor = event.anchor
        if anchor is None or anchor in composing:
            return super().compose_node(parent, index)
        composing.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            composing.discard(anchor)


class _TextConstructor(RoundTripConstructor):  # type: ignore[misc]
    """Round-trip constructor whose scalars are plain `str` and which knows `!public`."""

    def construct_text(self, node: Node) -> str:
        if not isinstance(node, ScalarNode):
            raise ConstructorError(None, None, f"expected a scalar for tag {node.tag}", node.start_mark)
        # str() turns ruamel's FoldedScalarString/LiteralScalarString into a plain str.
        return str(self.construct_scalar(node))

    def construct_null(self, node: Node) -> str:
        self.construct_text(node)
        return ""

    def construct_public(self, node: Node) -> PublicScalar | PublicVar:
        if isinstance(node, ScalarNode):
            return PublicScalar(self.construct_text(node))
        if not isinstance(node, MappingNode):
            raise ConstructorError(
                None, None, "!public applies to a mapping or a scalar, not a sequence", node.start_mark
            )
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConstructorError(
                    None, None, "a !public mapping must have text keys", key_node.start_mark
                )
            value = to_plain(self.construct_object(value_node, deep=True))
            target = known if key in PUBLIC_VAR_FIELDS else extra
            if key in target:
                raise ConstructorError(
                    None, None, f"duplicate key {key!r} in a !public mapping", key_node.start_mark
                )
            if key == "values":
                if not isinstance(value, list):
                    value = [] if value == "" else [value]
            elif key in PUBLIC_VAR_FIELDS and not isinstance(value, str):
                raise ConstructorError(
                    None, None, f"!public field {key!r} must be a scalar", value_node.start_mark
                )
            target[key] = value
        return PublicVar(
            **known,
            extra=extra,
            line=node.start_mark.line + 1,
            column=node.start_mark.column + 1,
        )

    def construct_unknown_tag(self, node: Node) -> Any:
        raise ConstructorError(
            None,
            None,
            f"unknown tag {node.tag} (only !public is supported)",
            node.start_mark,
        )


for _tag in ("str", "int", "float", "bool", "timestamp"):
    # Go keeps the source text of explicitly typed scalars when decoding into strings.
    _TextConstructor.add_constructor(f"tag:yaml.org,2002:{_tag}", _TextConstructor.construct_text)
_TextConstructor.add_constructor(_NULL_TAG, _TextConstructor.construct_null)
for _tag in ("binary", "omap", "pairs", "set"):
    _TextConstructor.add_constructor(f"tag:yaml.org,2002:{_tag}", _TextConstructor.construct_unknown_tag)
_TextConstructor.add_constructor("!public", _TextConstructor.construct_public)
_TextConstructor.add_constructor(None, _TextConstructor.construct_unknown_tag)

_local = threading.local()


def _yaml() -> YAML:
    """One loader per thread: ruamel's YAML objects keep parsing state and are not thread-safe."""
    loader: YAML | None = getattr(_local, "yaml", None)
    if loader is None:
        loader = YAML(typ="rt", pure=True)
        loader.Resolver = _TextResolver
        loader.Constructor = _TextConstructor
        loader.Composer = _Composer
        loader.allow_duplicate_keys = False
        _local.yaml = loader
    return loader


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _check_flow_depth(text: str, filename: str, limit: int) -> None:
    """Refuse deeply nested flow collections (`[[[[...`) before ruamel scans them.

    ruamel's scanner keeps a possible simple key per flow level and revisits them all for every
    token: 20,000 nested brackets take seconds before the composer's depth check is reached. This
    pass counts brackets outside quotes and comments; a bracket inside a plain scalar may count
    too, which only matters for text nesting over the limit.
    """
    depth = 0
    quote = ""
    line = 1
    line_start = 0
    comment = False
    for offset, char in enumerate(text):
        if char == "\n":
            line, line_start, comment = line + 1, offset + 1, False
        if comment:
            continue
        if quote:
            if char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char == "#":
            comment = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                column = offset - line_start + 1
                raise TemplateSourceError(
                    filename, line, column, f"nested deeper than {limit} levels (limit {YAML_DEPTH_ENV})"
                )
        elif char in "]}" and depth:
            depth -= 1


def load_yaml(text: str, filename: str) -> Any:
    """Parse one template document.

    Returns a `CommentedMap` for the usual mapping document (an empty one for an empty file), or a
    `CommentedSeq`/`str` if the document is a sequence/scalar; every scalar inside is a `str`
    (`PublicScalar`/`PublicVar` for `!public`). Raises `TemplateSourceError` naming `filename`,
    line and column for broken YAML, duplicate keys, several documents or unknown tags.
    """
    _local.limits = TemplateLimits.from_env()
    _check_flow_depth(text, filename, _local.limits.yaml_depth)
    _local.depth = 0
    _local.weights = {}
    try:
        loader = _yaml()
        try:
            document = loader.load(text)
        except BaseException:
            _local.yaml = None  # never reuse a loader left in an unknown state by a failure
            raise
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        parts = [p for p in (exc.context, exc.problem) if p]
        message = _one_line("; ".join(parts)) or _one_line(str(exc))
        line = mark.line + 1 if mark is not None else 0
        column = mark.column + 1 if mark is not None else 0
        raise TemplateSourceError(filename, line, column, message) from exc
    except ReaderError as exc:
        offset = exc.position if isinstance(exc.position, int) else 0
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        character = exc.character if isinstance(exc.character, int) else 0
        message = f"unacceptable character #x{character:04x}: {exc.reason}"
        raise TemplateSourceError(filename, line, column, message) from exc
    except YAMLError as exc:
        raise TemplateSourceError(filename, 0, 0, _one_line(str(exc))) from exc
    except TypeError as exc:  # ruamel hashes a complex key (`? [a]: b`, `? - :`) and fails doing so
        message = "a mapping key must not hold a mapping"
        raise TemplateSourceError(filename, 0, 0, message) from exc
    finally:
        _local.weights = {}  # the nodes are garbage now; their ids may be reused
    if document is None or document == "":
        return CommentedMap()
    return document


def position(node: Any, key: Any = None, *, value: bool = False) -> tuple[int, int] | None:
    """Where `node[key]` was written, as 1-based (line, column); None when unknown.

    With `key=None`, the position of the node itself. For a mapping, the key's position (or, with
    `value=True`, the value's); for a sequence, the item's. Keys brought in by a `<<` merge and
    plain Python values have no position.
    """
    if isinstance(node, PublicVar) and key is None:
        return (node.line, node.column) if node.line else None
    if not isinstance(node, (CommentedMap, CommentedSeq)):
        return None
    try:
        if key is None:
            line, column = node.lc.line, node.lc.col
        elif isinstance(node, CommentedMap):
            line, column = node.lc.value(key) if value else node.lc.key(key)
        else:
            line, column = node.lc.item(key)
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    if line is None or column is None:
        return None
    return (line + 1, column + 1)


def location(filename: str, node: Any, key: Any = None, *, value: bool = False) -> str:
    """`file:line:column` for `node[key]` (just `file` when the position is unknown)."""
    where = position(node, key, value=value)
    return f"{filename}:{where[0]}:{where[1]}" if where else filename


def to_plain(node: Any) -> Any:
    """A loaded tree as plain `dict`/`list`/`str`, dropping position information.

    `PublicVar` and `PublicScalar` are kept as they are (they carry the public flag); keys are
    strings.
    """
    if isinstance(node, Mapping):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_plain(v) for v in node]
    if isinstance(node, PublicScalar):
        return node
    if isinstance(node, str):
        return str(node)
    return node
