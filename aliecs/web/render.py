"""The core's snapshots (aliecs.api, aliecs.model) as the JSON objects of the REST API.

Field names are snake_case and stable; /api/openapi.json describes each object. Reading them
sends no message into the actor tree (records are read in place), so the page can poll or
refresh on every event without slowing a transition.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aliecs.api import Environment
from aliecs.durations import parse_duration
from aliecs.environment import fsm as states
from aliecs.environment.timeouts import DEFAULT_TIMEOUT, DEFAULT_TIMEOUTS
from aliecs.errors import AliecsError
from aliecs.locks import Lock
from aliecs.model import RoleTree, TaskInfo, TransitionResult
from aliecs.web.tracker import Run, Tracker
from aliecs.workflow.repos import TemplateInfo

# What the page offers as buttons: DEPLOY happens at creation, GO_ERROR is not an operator's action.
OPERATOR_EVENTS = tuple(e for e in states.EVENTS if e not in (states.DEPLOY, states.GO_ERROR))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def lock(value: Lock | None, session: str) -> dict[str, Any] | None:
    """The holder as the caller sees it: who, since when, and whether it is the caller (`mine`).
    The holder's session id is never shown."""
    if value is None:
        return None
    return {"operator": value.operator, "since_ms": value.since_ms, "mine": value.session == session}


def task(info: TaskInfo, env_id: str) -> dict[str, Any]:
    out = dataclasses.asdict(info)
    out["environment_id"] = env_id
    return out


def tree(node: RoleTree, env_id: str) -> dict[str, Any]:
    return {
        "name": node.name,
        "path": node.path,
        "state": node.state,
        "status": node.status,
        "task": task(node.task, env_id) if node.task is not None else None,
        "children": [tree(child, env_id) for child in node.children],
    }


def deadline_s(env: Environment, event: str) -> float:
    """The transition's deadline as the environment applies it (`<event>_timeout` or the default)."""
    template = env.template
    text = template.root.stack.get(f"{event.lower()}_timeout") if template is not None else None
    if text:
        try:
            return parse_duration(text)
        except ValueError:
            pass
    return DEFAULT_TIMEOUTS.get(event, DEFAULT_TIMEOUT)


def progress(env: Environment, tracker: Tracker) -> dict[str, Any] | None:
    """The running transition: tasks already in their target state vs all, elapsed vs deadline."""
    event = env.current_transition
    if not event:
        return None
    tasks = env.tasks
    target = states.TASK_STATE_AFTER.get(event, "")
    done = sum(1 for t in tasks if t.state == target) if target else 0
    started = tracker.transition_started_ms(env.id, event)
    return {
        "event": event,
        "target_state": target,
        "tasks_done": done,
        "tasks_total": len(tasks),
        "started_ms": started,
        "elapsed_s": round((now_ms() - started) / 1000, 3) if started else None,
        "deadline_s": deadline_s(env, event),
    }


def summary(env: Environment, held: Lock | None, session: str) -> dict[str, Any]:
    running = env.state == states.RUNNING
    return {
        "id": env.id,
        "workflow": env.workflow,
        "state": env.state,
        "run_number": env.run_number,
        "last_run_number": env.last_run_number,
        "run_start_ms": env.run_start_ms if running else 0,
        "current_transition": env.current_transition,
        "created_ms": env.created_ms,
        "tasks": env.task_count,
        "error": env.error,
        "lock": lock(held, session),
        "allowed_events": [e for e in states.events_from(env.state) if e in OPERATOR_EVENTS]
        if not env.current_transition
        else [],
    }


def transition(result: TransitionResult) -> dict[str, Any]:
    out = dataclasses.asdict(result)
    out["warnings"] = list(result.warnings)
    return out


def run(value: Run) -> dict[str, Any]:
    return dataclasses.asdict(value)


def detail(env: Environment, held: Lock | None, session: str, tracker: Tracker) -> dict[str, Any]:
    out = summary(env, held, session)
    template = env.template
    out.update(
        description=template.description if template is not None else "",
        user_vars=env.user_vars,
        tree=_tree_or_none(env),
        task_list=[task(info, env.id) for info in env.tasks],
        history=[transition(result) for result in env.history],
        runs=[run(r) for r in tracker.runs(env.id)],
        progress=progress(env, tracker),
    )
    return out


def _tree_or_none(env: Environment) -> dict[str, Any] | None:
    try:
        return tree(env.tree(), env.id)
    except AliecsError:  # not built yet (the first instant of a creation)
        return None


def template_info(info: TemplateInfo) -> dict[str, Any]:
    """A workflow template and its public variables (the original's VarSpec fields, camelCase)."""
    return {
        "repository": info.repository,
        "name": info.name,
        "revision": info.revision,
        "public": info.public,
        "description": info.description,
        "reference": f"{info.repository}/workflows/{info.name}@{info.revision}",
        "variables": {
            name: {**dataclasses.asdict(spec), "allowedValues": list(spec.allowedValues)}
            for name, spec in info.variables.items()
        },
    }
