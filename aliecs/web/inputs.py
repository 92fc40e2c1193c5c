"""Reading what a client sends: JSON bodies, path ids, query parameters, the session header.

Every input is bounded and checked before it reaches the core; a bad one gets a 400 naming the
field and what is expected, never an echo of unbounded client text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from aliecs.web.errors import BadRequest, UnsupportedMediaType

MAX_VARS = 1000
MAX_KEY = 256
MAX_VALUE = 64 * 1024
MAX_WORKFLOW = 512
SESSION_HEADER = "X-Aliecs-Session"

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KEY = re.compile(r"^[^\s\x00-\x1f]{1,256}$")


def path_id(request: web.Request, name: str = "id") -> str:
    value = request.match_info[name]
    if not _ID.match(value):
        raise BadRequest(f"{name} in the path must be 1-64 letters, digits, '.', '-' or '_'")
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (bodies are size-limited by the app: 413 beyond MAX_BODY)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the request body as JSON (Content-Type: application/json)")
    text = await request.text()
    try:
        body = json.loads(text or "{}")
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, limit: int, required: bool = True) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    value = value.strip()
    if required and not value:
        raise BadRequest(f"{name} is missing or empty")
    if len(value) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters")
    return value


def bool_field(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value


def variables(body: dict[str, Any], name: str = "vars") -> dict[str, str]:
    """User variables: an object of name -> string, number or boolean (booleans become "true"/"false",
    as templates compare them)."""
    raw = body.get(name, {})
    if not isinstance(raw, dict):
        raise BadRequest(f"{name} must be an object of name -> value")
    if len(raw) > MAX_VARS:
        raise BadRequest(f"{name} has {len(raw)} entries; at most {MAX_VARS}")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not _KEY.match(key):
            raise BadRequest(f"{name}: variable names must be 1-{MAX_KEY} characters without spaces")
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            raise BadRequest(f"{name}.{key}: value must be a string, a number or a boolean")
        if len(text) > MAX_VALUE:
            raise BadRequest(f"{name}.{key}: value is longer than {MAX_VALUE} characters")
        out[key] = text
    return out


def int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name} must be between {low} and {high}")
    return value


def text_query(request: web.Request, name: str, limit: int = 256) -> str:
    value = request.query.get(name, "")
    if len(value) > limit:
        raise BadRequest(f"query parameter {name} is longer than {limit} characters")
    return value


def bool_query(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false", "1", "0", ""):
        raise BadRequest(f"query parameter {name} must be true or false")
    return value in ("true", "1")


def session(request: web.Request) -> str:
    """The caller's session id (what a lock is tied to); "" when the header is absent."""
    value = request.headers.get(SESSION_HEADER, "")
    return value[:200]
