"""What a scope may hold besides strings: namespaces, functions that see the scope, integer ranges."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aliecs.workflow.expr.errors import Scope

# ==================================================================================================
# Scope helpers


class Namespace(dict[str, Any]):
    """A named group of functions (`strings`, `json`, `util`…): a missing member is an unknown name
    (`strings.Foo`) instead of nil, so a typo in a function name is reported as such."""

    def __init__(self, name: str, members: Mapping[str, Any] | None = None) -> None:
        super().__init__(members or {})
        self.name = name

    def __repr__(self) -> str:
        return f"Namespace({self.name!r}, {sorted(self)})"


class ScopeFunction:
    """A function that needs the evaluation scope (e.g. `util.PrefixedOverride` reads other
    variables): it is called as `fn(scope, *args)`."""

    __slots__ = ("__name__", "fn")

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        self.fn = fn
        self.__name__ = name or getattr(fn, "__name__", "function")

    def __call__(self, scope: Scope, *args: Any) -> Any:
        return self.fn(scope, *args)

    def __repr__(self) -> str:
        return f"ScopeFunction({self.__name__})"


class IntRange(list[int]):
    """The result of `a..b`: Go's `[]int`, which AliECS prints with %v (`[1 2 3]`), not as JSON."""
