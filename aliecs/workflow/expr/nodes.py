"""The syntax tree the parser builds and the compiler walks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
