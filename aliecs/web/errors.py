"""Exceptions -> JSON error answers with the HTTP status a client can act on.

Every error the REST API returns has the same shape, `{"error": message, "status": code}` (plus
the environment's state and each task's error when a transition failed), so the page shows the
message as is and programs branch on the status. The mapping lives here, in one place, next to
the gRPC one (`aliecs.server.errors`), with the same messages.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from aliecs.errors import (
    AliecsError,
    DeploymentError,
    EnvironmentBusyError,
    InvalidTransitionError,
    TransitionError,
    UnknownEnvironmentError,
    UnknownWorkflowError,
)
from aliecs.locks import LockError, LockRequestError
from aliecs.server.errors import UnknownTaskError
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.repos import (
    RepositoryError,
    RepositoryExistsError,
    RepositoryFetchError,
    UnknownRepositoryError,
    UnknownRevisionError,
)

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # bytes of a request body (aiohttp answers 413 beyond)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(AliecsError):
    """The request itself is wrong (missing field, wrong type, value out of bounds)."""


class Unauthorized(AliecsError):
    """No token, or the wrong one, on a core that requires a token."""


class Forbidden(AliecsError):
    """A request from another web site (or another host name) than the page's own."""


class UnsupportedMediaType(AliecsError):
    """A request body that is not JSON."""


# Checked in order: subclasses before their bases.
_STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (BadRequest, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (UnsupportedMediaType, 415),
    (LockRequestError, 400),
    (LockError, 423),
    (UnknownEnvironmentError, 404),
    (UnknownTaskError, 404),
    (UnknownWorkflowError, 404),
    (UnknownRepositoryError, 404),
    (UnknownRevisionError, 404),
    (RepositoryExistsError, 409),
    (RepositoryFetchError, 502),
    (RepositoryError, 400),
    (InvalidTransitionError, 409),
    (EnvironmentBusyError, 409),
    (TransitionError, 502),
    (TemplateError, 400),
    (DeploymentError, 503),
    (AliecsError, 409),
)


def status_for(exc: BaseException) -> int:
    for kind, status in _STATUSES:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(exc: BaseException) -> dict[str, Any]:
    status = status_for(exc)
    if status == 500:
        message = f"internal error in the core: {type(exc).__name__}; see the core's log"
    else:
        message = str(exc)
    body: dict[str, Any] = {"error": message, "status": status}
    if isinstance(exc, TransitionError):
        body["state"] = exc.state
        body["task_errors"] = [
            {
                "task_id": e.task_id,
                "name": e.name,
                "host": e.host,
                "message": e.message,
                "critical": e.critical,
            }
            for e in exc.task_errors
        ]
    if isinstance(exc, InvalidTransitionError):
        body["state"] = exc.state
        body["allowed"] = list(exc.allowed)
    return body


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure under /api/ answers JSON: aiohttp's own (404 route, 405, 413) and ours."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 413:
            message = f"request body too large (at most {MAX_BODY} bytes)"
        elif exc.status == 404:
            message = f"no such API route: {request.method} {request.path[:200]} (see /api/openapi.json)"
        elif exc.status == 405:
            message = f"method {request.method} not allowed on {request.path[:200]} (see /api/openapi.json)"
        return json_error(exc.status, message)
    except Exception as exc:
        body = error_body(exc)
        if body["status"] == 500:
            log.exception("internal error answering %s %s", request.method, request.path[:200])
        return web.json_response(body, status=body["status"])
