"""aliecs: a Python experiment control system modelled on ALICE's AliECS.

The public API for harnesses: `Core.embedded()`, `Environment`, `TaskInfo`, `DirectoryRepository`
and the errors (waits and test helpers: `aliecs.testing`).
Names are imported lazily: task processes import `aliecs.occ` and must not pay for the whole core.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Core": "aliecs.api",
    "Environment": "aliecs.api",
    "DirectoryRepository": "aliecs.workflow.repository",
    "AliecsError": "aliecs.errors",
    "EnvironmentBusyError": "aliecs.errors",
    "InvalidTransitionError": "aliecs.errors",
    "ModifyError": "aliecs.errors",
    "TaskError": "aliecs.errors",
    "TransitionError": "aliecs.errors",
    "UnknownEnvironmentError": "aliecs.errors",
    "UnknownTaskError": "aliecs.errors",
    "UnknownWorkflowError": "aliecs.errors",
    "RoleTree": "aliecs.model",
    "TaskInfo": "aliecs.model",
    "TransitionResult": "aliecs.model",
}

__all__ = [
    "AliecsError",
    "Core",
    "DirectoryRepository",
    "Environment",
    "EnvironmentBusyError",
    "InvalidTransitionError",
    "ModifyError",
    "RoleTree",
    "TaskError",
    "TaskInfo",
    "TransitionError",
    "TransitionResult",
    "UnknownEnvironmentError",
    "UnknownTaskError",
    "UnknownWorkflowError",
]

if TYPE_CHECKING:
    from aliecs.api import Core, Environment
    from aliecs.errors import (
        AliecsError,
        EnvironmentBusyError,
        InvalidTransitionError,
        ModifyError,
        TaskError,
        TransitionError,
        UnknownEnvironmentError,
        UnknownTaskError,
        UnknownWorkflowError,
    )
    from aliecs.model import RoleTree, TaskInfo, TransitionResult
    from aliecs.workflow.repository import DirectoryRepository


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aliecs' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
