"""Bounds on what a control API request may carry, checked before any handler runs.

Every string, list and map of a request is bounded so that no client can make the core store,
search or echo unbounded text. The limits are generous for real use and named in the error, so a
client that hits one knows which field and what to change:

- ids (environment, task and subscription ids) and variable names: `MAX_ID` characters;
  the original's ids are 11-character strings and task ids UUIDs;
- any other text (template references, repository URLs, path patterns have their own limit in
  `rolepath`): `MAX_TEXT`;
- variables: `MAX_VARS` entries of at most `MAX_VAR_VALUE` characters each (a JSON list of a
  thousand host names fits);
- repeated fields: `MAX_ITEMS` items.
The whole message is bounded before decoding (`aliecs.wire.MAX_MESSAGE_BYTES`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import betterproto

from aliecs.server.errors import invalid

MAX_ID = 256
MAX_TEXT = 4096
MAX_VARS = 1000
MAX_VAR_VALUE = 64 * 1024
MAX_ITEMS = 10_000

_ID_FIELDS = frozenset({"id", "env_id", "task_id", "task_ids", "environment_id"})


def check_request(request: betterproto.Message) -> None:
    """Raise INVALID_ARGUMENT naming the first field of `request` over its bound."""
    _check_message(request, type(request).__name__)


def _check_message(message: betterproto.Message, where: str) -> None:
    for field in dataclasses.fields(cast(Any, message)):  # betterproto messages are dataclasses
        value = getattr(message, field.name)
        _check_value(value, f"{where}.{field.name}", field.name)


def _check_value(value: Any, where: str, name: str) -> None:
    if isinstance(value, str):
        _check_text(value, where, MAX_ID if name in _ID_FIELDS else MAX_TEXT)
    elif isinstance(value, betterproto.Message):
        _check_message(value, where)
    elif isinstance(value, dict):
        if len(value) > MAX_VARS:
            raise invalid(f"{where} has {len(value)} entries, over the limit of {MAX_VARS}")
        for key, item in value.items():
            _check_text(str(key), f"{where} key", MAX_ID)
            if isinstance(item, str):
                _check_text(item, f"{where}[{key}]", MAX_VAR_VALUE)
    elif isinstance(value, list):
        if len(value) > MAX_ITEMS:
            raise invalid(f"{where} has {len(value)} items, over the limit of {MAX_ITEMS}")
        for item in value:
            _check_value(item, where, name)


def _check_text(text: str, where: str, limit: int) -> None:
    if len(text) > limit:
        raise invalid(f"{where} is {len(text)} characters long, over the limit of {limit}")
