"""Glue between template data and the expression language: scopes, field rendering, variable maps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aliecs.workflow.errors import TemplateError
from aliecs.workflow.expr import ExprError, render
from aliecs.workflow.functions import base_function_scope
from aliecs.workflow.yamlsource import PublicVar, to_plain

if TYPE_CHECKING:
    from aliecs.workflow.template import Role

_FUNCTIONS = base_function_scope()


@dataclass(frozen=True)
class RoleRef:
    """What `Parent()`, `Up(n)` and `This()` return: the role's name and dotted path."""

    Name: str
    Path: str


def role_scope(parent: Role | None, this: Role | None) -> dict[str, Any]:
    """`Parent()`, `Up(n)` and `This()` for the role being processed (whose parent is `parent`)."""

    def up(levels: Any = 1) -> RoleRef:
        if int(levels) < 1:
            raise ValueError(f"Up({levels}): the number of levels must be at least 1")
        node = parent
        for _ in range(int(levels) - 1):
            node = node.parent if node is not None else None
        if node is None:
            raise ValueError(f"Up({levels}) goes above the root role")
        return RoleRef(node.name, node.path)

    def this_role() -> RoleRef:
        if this is None:
            raise ValueError("This() is only available once the role's name is known")
        return RoleRef(this.name, this.path)

    return {"Parent": lambda: up(1), "Up": up, "This": this_role}


def render_value(
    text: str,
    stack: Mapping[str, str],
    *,
    file: str,
    role_path: str,
    scope_extra: Mapping[str, Any] | None = None,
    line: int | None = None,
    functions: Mapping[str, Any] | None = None,
) -> str:
    """Render the `{{ }}` tags of one template field; errors name the file, line and role path.

    `functions` replaces the built-in function scope (an expansion adds its service namespaces);
    variables shadow functions, as a Go map merge would.
    """
    if "{{" not in text:
        return text
    scope: dict[str, Any] = dict(_FUNCTIONS if functions is None else functions)
    if scope_extra:
        scope.update(scope_extra)
    scope.update(stack)
    try:
        return render(text, scope)
    except ExprError as exc:
        raise TemplateError(str(exc), file=file, line=line, role_path=role_path) from exc


def plain(node: Any) -> Any:
    """YAML nodes as plain dicts, lists and strings (public-variable markers are kept)."""
    return to_plain(node)


def variables_of(node: Any) -> dict[str, str]:
    """A defaults/vars mapping as strings: a `!public` entry gives its value, a bare mapping is
    dropped (as the original does), a missing value is the empty string."""
    if node in (None, ""):
        return {}
    mapping = plain(node)
    if not isinstance(mapping, Mapping):
        raise TemplateError(f"variables must be a mapping, got {type(mapping).__name__}")
    result: dict[str, str] = {}
    for key, value in mapping.items():
        if isinstance(value, PublicVar):
            result[str(key)] = value.value
        elif isinstance(value, (Mapping, list)):
            continue
        else:
            result[str(key)] = "" if value is None else str(value)
    return result
