"""The state directory is private, and names from templates or users never escape it.

The state directory holds the audit log, the run numbers, the repositories and every task's log:
other users of the machine have no business reading them (task output may carry configuration),
so it is made 0700 at start and the files aliecs creates there are 0600.

Role names come from templates and their variables, which any client can set
(`hosts='["../../../../x"]'` gives a role named `../../../../x`), and environment ids and task
ids are text too: `task_log_path` turns them into one safe file name each and checks the result
is inside the logs directory, so a task log can never be written anywhere else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
#: Longest file name component built from a name (file systems allow 255 bytes).
MAX_COMPONENT = 200

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")


class UnsafePathError(ValueError):
    """A path built from names would leave the directory it belongs to."""


def make_private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def safe_name(name: str) -> str:
    """`name` as one file name component: path separators and unusual characters become `_`, no
    leading dot (so never `.` or `..`), at most `MAX_COMPONENT` characters."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".") or "_"
    return cleaned[:MAX_COMPONENT]


def task_log_path(log_dir: Path, environment_id: str, role_path: str, task_id: str) -> Path:
    """Where a task's output goes: `<logs>/<environment>/<role path>.<task id>.log`, always inside
    `log_dir` whatever the names contain."""
    path = log_dir / safe_name(environment_id) / f"{safe_name(role_path)}.{safe_name(task_id)}.log"
    if not path.resolve().is_relative_to(log_dir.resolve()):
        raise UnsafePathError(f"task log path for role {role_path[:80]!r} would leave {log_dir}")
    return path


def open_private_log(path: Path) -> int:
    """Open (create) a log file for appending, 0600, in a 0700 directory; returns the descriptor."""
    make_private_dir(path.parent)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
