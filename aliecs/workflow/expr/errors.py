"""Errors of the expression language (each names the expression and the position), and shared types."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aliecs.errors import AliecsError

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
