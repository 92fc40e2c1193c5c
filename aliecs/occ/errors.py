"""Errors of the OCC layer, phrased for the person who has to act on them.

Each names the address of the process and the RPC involved, because the reader is usually looking at
one failing task among thousands and needs to know which one and what to try next.
"""

from __future__ import annotations

from aliecs.errors import AliecsError


class OccError(AliecsError):
    """Base of every error raised by the OCC client and server library."""


class OccUnreachableError(OccError):
    """Nothing answered at the address, or the connection broke mid-call (process gone or not started)."""


class OccDeadlineError(OccError):
    """The process did not answer an RPC within its deadline (hung, overloaded, or a very slow callback)."""


class OccRejectedError(OccError):
    """The process answered with a gRPC error status: the request was refused, nothing was changed.

    ``status`` is the gRPC status name (INVALID_ARGUMENT, FAILED_PRECONDITION, ...) and ``detail`` the
    process's own explanation, which usually names both the expected and the actual state.
    """

    def __init__(self, message: str, status: str, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class OccStreamOverflowError(OccRejectedError):
    """A stream subscriber fell too far behind and was dropped by the process; resubscribe to continue."""


class OccPortInUseError(OccError):
    """The control port is already taken, so this process cannot be controlled on it."""
