"""Rules for changing a deployed environment's role tree in place: which role a path names, when a
subtree may be excluded or included, and what state an included subtree must catch up to.

Pure functions over the expanded workflow, so that the rules read in one place (the environment
actor applies them) and are documented in the README's "Changing a running environment".
"""

from __future__ import annotations

import re

from aliecs.environment import fsm as states
from aliecs.errors import ModifyError
from aliecs.workflow.template import Role

#: Environment states in which a subtree may be excluded, included, reconfigured or scaled.
MODIFIABLE = (states.DEPLOYED, states.CONFIGURED, states.RUNNING)

#: The task state an included subtree is brought to, for each state of its environment.
TASK_TARGET: dict[str, str] = {
    states.DEPLOYED: "STANDBY",
    states.CONFIGURED: "CONFIGURED",
    states.RUNNING: "RUNNING",
}

# Longest role path accepted from a client (paths are dotted role names, never this long).
MAX_PATH = 1024


def under(path: str, root: str) -> bool:
    """True when role `path` is `root` or inside its subtree."""
    return path == root or path.startswith(root + ".")


def find_role(root: Role, path: str, env_id: str) -> Role:
    """The deployable role `path` names: a full path (`copypush.sink1`) or one relative to the
    root (`sink1`). The error lists a few paths that exist."""
    text = path.strip()
    if not text or len(text) > MAX_PATH:
        raise ModifyError(f"environment {env_id}: a role path is needed (1 to {MAX_PATH} characters)")
    for candidate in (text, f"{root.path}.{text}"):
        role = root.find(candidate)
        if role is not None and role.call is None and not role.is_hook:
            return role
    known = [role.path for role in root.walk() if role.call is None and not role.is_hook][1:]
    shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    raise ModifyError(f"environment {env_id}: no role {text[:100]!r} (roles: {shown or 'none'})")


def check_state(env_id: str, state: str, what: str) -> None:
    if state not in MODIFIABLE:
        raise ModifyError(
            f"environment {env_id}: cannot {what} in state {state} (allowed in {', '.join(MODIFIABLE)})"
        )


def check_running(env_id: str, state: str, path: str, critical: bool, allow_running: bool, what: str) -> None:
    """In RUNNING only non-critical subtrees change, unless the operator allows it explicitly:
    a critical task leaving or joining mid-run changes what the run is."""
    if state == states.RUNNING and critical and not allow_running:
        raise ModifyError(
            f"environment {env_id}: cannot {what} {path} during a run: it holds critical tasks "
            "(stop the run first, or allow it explicitly: allow_running=True, --allow-running)"
        )


def deployable_paths(root: Role) -> set[str]:
    """The paths of the roles an environment builds actors for (no hooks, no calls)."""
    paths = {root.path}
    for child in root.deployable_children():
        paths |= deployable_paths(child)
    return paths


def _plain(key: str) -> str:
    """An iterator key without its template expressions: `copypush.sink{{ it }}` -> `copypush.sink`."""
    return re.sub(r"\{\{.*?\}\}", "", key)


def find_iterator(root: Role, iterators: dict[str, int], path: str, env_id: str) -> str:
    """The key of the iterator `path` names: its key (`copypush.sink{{ it }}`), that key without
    the template (`copypush.sink`, or `sink` relative to the root), or the path of a role it made."""
    text = path.strip()
    if not text or len(text) > MAX_PATH:
        raise ModifyError(f"environment {env_id}: an iterator path is needed (1 to {MAX_PATH} characters)")
    for candidate in (text, f"{root.path}.{text}"):
        for key in iterators:
            if candidate in (key, _plain(key)):
                return key
        role = root.find(candidate)
        if role is not None and role.iterator:
            return role.iterator
    known = ", ".join(sorted(_plain(key) for key in iterators)) or "none"
    raise ModifyError(f"environment {env_id}: no iterator {text[:100]!r} (iterators: {known})")
