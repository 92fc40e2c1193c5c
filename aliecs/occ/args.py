"""Transition arguments: the flat key/value list of the protocol, and a tree view of it.

On the wire, arguments are a flat list of ``ConfigEntry{key, value}`` where dots in keys describe a
hierarchy (``chans.data.0.address``). Callbacks receive the flat ``dict[str, str]`` because it is exact
and cheap; :func:`nest_args` builds the tree when a program prefers navigating it, the way OCClib
users read a property tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Key under which a node keeps its own value when it also has children (``a=1`` and ``a.b=2``).
SELF_KEY = ""


def nest_args(flat: Mapping[str, str]) -> dict[str, Any]:
    """Turn dotted keys into nested dicts: ``{"a.b": "1"} -> {"a": {"b": "1"}}``.

    Nothing is lost when a key is both a value and a parent (``a=1`` plus ``a.b=2``): the node becomes
    ``{"": "1", "b": "2"}``, the value being kept under :data:`SELF_KEY`. Keys are processed in sorted
    order so the result does not depend on the order of the arguments on the wire.
    """
    root: dict[str, Any] = {}
    for key in sorted(flat):
        value = flat[key]
        parts = key.split(".")
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {} if child is None else {SELF_KEY: child}
                node[part] = child
            node = child
        leaf = parts[-1]
        existing = node.get(leaf)
        if isinstance(existing, dict):
            existing[SELF_KEY] = value
        else:
            node[leaf] = value
    return root


def flatten_args(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The inverse of :func:`nest_args`: nested mappings to dotted keys, leaf values turned into text.

    Useful to push a YAML/JSON configuration as transition arguments (what peanut's config loading does).
    Lists are indexed like the channel keys of the protocol (``chans.data.0.address``).
    """
    flat: dict[str, str] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                name = str(key)
                if name == SELF_KEY:
                    walk(child, path)
                else:
                    walk(child, f"{path}.{name}" if path else name)
        elif isinstance(node, list | tuple):
            for index, child in enumerate(node):
                walk(child, f"{path}.{index}" if path else str(index))
        else:
            if node is None:
                text = ""
            elif isinstance(node, bool):
                text = "true" if node else "false"
            else:
                text = str(node)
            flat[path] = text

    walk(tree, prefix)
    return flat
