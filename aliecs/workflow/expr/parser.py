"""The parser: precedence climbing after expr-lang's parser/parser.go."""

from __future__ import annotations

import functools
from typing import NoReturn

from aliecs.workflow.expr.errors import ExprSyntaxError
from aliecs.workflow.expr.lexer import _NEGATABLE, Token, _is_ident_part, _is_ident_start, tokenize
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
