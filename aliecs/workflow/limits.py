"""Bounds on template parsing and expansion, so no template or user variable can exhaust the core.

A template is data from a repository and its variables come from any client: `for` over a
million items, a 600-byte YAML of nested aliases (billion laughs) or a document nested 20,000 levels
deep would otherwise take minutes of CPU, gigabytes of memory or crash the parser. Each limit is
far above what the ALICE workflows need and can be raised by an operator through an environment
variable of the core process, read at every expansion:

- items of one `for`: 4096 (ALIECS_MAX_FOR_ITEMS); ALICE iterates over a few hundred hosts or links;
- roles in one environment: 50000 (ALIECS_MAX_ROLES); 5x the 10,000-task scale goal;
- YAML nodes once aliases are expanded: 200000 (ALIECS_MAX_YAML_NODES); every workflow of the
  ALICE corpus loads well below it;
- YAML nesting depth: 100 (ALIECS_MAX_YAML_DEPTH, at most 250); workflows nest about 20 levels and
  the recursive YAML composer reaches Python's recursion limit near 300.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

FOR_ITEMS_ENV = "ALIECS_MAX_FOR_ITEMS"
ROLES_ENV = "ALIECS_MAX_ROLES"
YAML_NODES_ENV = "ALIECS_MAX_YAML_NODES"
YAML_DEPTH_ENV = "ALIECS_MAX_YAML_DEPTH"

#: Above this the YAML composer would hit Python's recursion limit: the variable cannot raise it.
HARD_MAX_YAML_DEPTH = 250


@dataclass(frozen=True)
class TemplateLimits:
    for_items: int = 4096
    roles: int = 50_000
    yaml_nodes: int = 200_000
    yaml_depth: int = 100

    @classmethod
    def from_env(cls) -> TemplateLimits:
        """The defaults, overridden by the ALIECS_MAX_* variables of this process."""
        default = cls()
        return cls(
            for_items=_env_int(FOR_ITEMS_ENV, default.for_items),
            roles=_env_int(ROLES_ENV, default.roles),
            yaml_nodes=_env_int(YAML_NODES_ENV, default.yaml_nodes),
            yaml_depth=min(_env_int(YAML_DEPTH_ENV, default.yaml_depth), HARD_MAX_YAML_DEPTH),
        )


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{name}={value} must be at least 1")
    return value
