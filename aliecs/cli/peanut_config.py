"""peanut's configuration files: YAML or JSON maps flattened to dotted keys (`a: {b: 1}` -> `a.b=1`),
the flat key=value arguments OCC transitions carry. Used by the CLI (`-config`) and the TUI."""

from __future__ import annotations

import json
from collections.abc import Mapping
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML


class ConfigError(ValueError):
    """The configuration file cannot be read or is not a map."""


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested maps and lists -> dotted keys with string values (what OCC transition arguments are)."""
    if isinstance(data, Mapping):
        items = [(str(key), value) for key, value in data.items()]
    elif isinstance(data, list):
        items = [(str(index), value) for index, value in enumerate(data)]
    else:
        return {prefix: "" if data is None else str(data)}
    flat: dict[str, str] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


def load_config(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else YAML(typ="safe").load(StringIO(text))
    except Exception as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if is_json else 'YAML'}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a map of keys to values")
    return flatten(data)
