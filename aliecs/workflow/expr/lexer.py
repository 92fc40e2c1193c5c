"""The tokenizer: expr-lang's tokens (operators, literals with Go's escapes, keywords)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NoReturn

from aliecs.workflow.expr.errors import _INT_MAX, ExprSyntaxError, _quote

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
