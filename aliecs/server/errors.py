"""Map aliecs exceptions to gRPC status codes with messages an operator can act on.

Clients (coconut, GUIs) show the status message as is, so each message says what failed and what
to do next; the code lets programs react without parsing text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from aliecs.errors import (
    AliecsError,
    DeploymentError,
    EnvironmentBusyError,
    InvalidTransitionError,
    TransitionError,
    UnknownEnvironmentError,
    UnknownTaskError,
    UnknownWorkflowError,
)
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.repos import (
    RepositoryError,
    RepositoryExistsError,
    RepositoryFetchError,
    UnknownRepositoryError,
    UnknownRevisionError,
)

log = logging.getLogger(__name__)


def status_for(exc: BaseException) -> tuple[Status, str]:
    """The status code and message a client should see for `exc`."""
    if isinstance(exc, GRPCError):
        return exc.status, exc.message or ""
    if isinstance(exc, UnknownEnvironmentError):
        return Status.NOT_FOUND, f"{exc}; list environments with `coconut env list`"
    if isinstance(exc, UnknownTaskError):
        return Status.NOT_FOUND, f"{exc}; list tasks with `coconut task list`"
    if isinstance(exc, UnknownWorkflowError):
        return Status.NOT_FOUND, f"{exc}; list templates with `coconut template list`"
    if isinstance(exc, RepositoryError):
        return _repository_status(exc)
    if isinstance(exc, InvalidTransitionError):
        return Status.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, EnvironmentBusyError):
        return Status.ABORTED, f"{exc}; wait for it to finish and retry"
    if isinstance(exc, TransitionError):  # the original's code for a failed transition
        return Status.ABORTED, str(exc)
    if isinstance(exc, TemplateError):
        return Status.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, DeploymentError):
        return Status.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, AliecsError):
        return Status.FAILED_PRECONDITION, str(exc)
    return Status.INTERNAL, (
        f"internal error in the core ({type(exc).__name__}: {str(exc)[:200]}); see the core's log"
    )


def _repository_status(exc: RepositoryError) -> tuple[Status, str]:
    if isinstance(exc, UnknownRepositoryError):
        return Status.NOT_FOUND, f"{exc}; list repositories with `coconut repository list`"
    if isinstance(exc, UnknownRevisionError):
        return Status.NOT_FOUND, f"{exc}; list its revisions with `coconut repository list -r`"
    if isinstance(exc, RepositoryExistsError):
        return Status.ALREADY_EXISTS, f"{exc}; use `coconut repository refresh` to fetch new commits"
    if isinstance(exc, RepositoryFetchError):
        return Status.UNAVAILABLE, f"{exc}; check the URL and that the core can reach it"
    return Status.INVALID_ARGUMENT, str(exc)


#: Longest status message sent, in characters: it travels in an HTTP/2 header, whose encoding is
#: pure Python, and a client must not be able to make the core encode megabytes of its own text.
MAX_STATUS_MESSAGE = 8192


def bounded_message(message: str) -> str:
    if len(message) <= MAX_STATUS_MESSAGE:
        return message
    cut = len(message) - MAX_STATUS_MESSAGE
    return f"{message[:MAX_STATUS_MESSAGE]}... ({cut} more characters cut; see the core's log)"


def grpc_error(exc: BaseException) -> GRPCError:
    status, message = status_for(exc)
    return GRPCError(status, bounded_message(message))


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Re-raise aliecs exceptions raised in the block as `GRPCError`s.

    grpclib's own errors pass unchanged: they are about the call (the client left, the connection
    broke), which grpclib handles and logs itself, not the core's errors.
    """
    try:
        yield
    except (GRPCError, StreamTerminatedError, ProtocolError):
        raise
    except Exception as exc:
        error = grpc_error(exc)
        if not isinstance(exc, AliecsError):
            log.error("internal error answering a request", exc_info=exc)
        raise error from exc


def invalid(message: str) -> GRPCError:
    return GRPCError(Status.INVALID_ARGUMENT, message)


def unimplemented(message: str) -> GRPCError:
    return GRPCError(Status.UNIMPLEMENTED, message)


def failed_precondition(message: str) -> GRPCError:
    return GRPCError(Status.FAILED_PRECONDITION, message)
