"""OCC: make a process controllable by AliECS-style executors, and drive such processes.

For process authors: write a handler with ``on_configure`` / ``on_start`` / ... callbacks and call
``sys.exit(aliecs.occ.run(handler))``. For controllers: :class:`OccClient`. The state machine itself
(:mod:`aliecs.occ.states`) is plain data shared with the core.
"""

from __future__ import annotations

from aliecs.occ.args import flatten_args, nest_args
from aliecs.occ.client import OccClient, Subscription, TransitionResult, parse_address
from aliecs.occ.errors import (
    OccDeadlineError,
    OccError,
    OccPortInUseError,
    OccRejectedError,
    OccStreamOverflowError,
    OccUnreachableError,
)
from aliecs.occ.process import control_port_from, run, serve
from aliecs.occ.server import (
    CONTROL_PORT_ENV,
    DEFAULT_CONTROL_PORT,
    OccHandler,
    OccTask,
)
from aliecs.occ.states import Event, State, TransitionNotAllowedError, allowed_events, next_state

__all__ = [
    "CONTROL_PORT_ENV",
    "DEFAULT_CONTROL_PORT",
    "Event",
    "OccClient",
    "OccDeadlineError",
    "OccError",
    "OccHandler",
    "OccPortInUseError",
    "OccRejectedError",
    "OccStreamOverflowError",
    "OccTask",
    "OccUnreachableError",
    "State",
    "Subscription",
    "TransitionNotAllowedError",
    "TransitionResult",
    "allowed_events",
    "control_port_from",
    "flatten_args",
    "nest_args",
    "next_state",
    "parse_address",
    "run",
    "serve",
]
