"""Changing a deployed environment in place: exclude and include role subtrees, reshape it to a new
expansion of its template (`set_vars`, `scale`). See `aliecs.environment.subtrees` for the rules.

A change never moves the environment's state: tasks that join it are brought to the task state
that matches it (`catch_up`), tasks that leave it are killed and released. A task that cannot
catch up is left excluded with the reason, and the change fails naming it (`ModifyError`).
"""

from __future__ import annotations

import logging

from actors.environment import fanout, wiring
from actors.environment.announce import announce
from actors.environment.entries import TaskEntry, new_task_id
from actors.environment.persistence import persist
from actors.environment.state import EnvironmentState
from actors.environment.steps.activity import start_arguments, stop_arguments
from actors.environment.steps.configure import configure_arguments
from actors.environment.steps.deploy import deploy
from actors.hooks import HookEngine, HookPlan
from aliecs.environment import fsm as states
from aliecs.environment import subtrees
from aliecs.errors import ModifyError, RestartNeededError, TaskError
from aliecs.events import DONE_ERROR, DONE_OK, STARTED
from aliecs.model import ModifyResult
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.template import Role, Workflow

log = logging.getLogger(__name__)

# Task errors named in a change's failure before the rest are only counted.
_NAMED_ERRORS = 5


def error_summary(errors: list[TaskError]) -> str:
    """The first few errors as text, and how many more there are."""
    more = len(errors) - _NAMED_ERRORS
    return "; ".join(str(error) for error in errors[:_NAMED_ERRORS]) + (
        f"; and {more} more" if more > 0 else ""
    )


def announce_change(
    env: EnvironmentState, operation: str, status: str, message: str, error: str = ""
) -> None:
    """An in-place change (EXCLUDE, INCLUDE, ...) as an environment event: its transition is the
    operation, and the environment's state does not change."""
    announce(env, operation, status, message=message, error=error)


async def exclude(env: EnvironmentState, path: str, allow_running: bool = False) -> list[str]:
    """Leave the subtree at `path` out of every transition and aggregate; its processes keep
    running. Returns the ids of its tasks."""
    env_id = env.record.id
    subtrees.check_state(env_id, env.fsm.state, "exclude a role")
    role = subtrees.find_role(env.workflow.root, path, env_id)
    if role.parent is None:
        raise ModifyError(f"environment {env_id}: cannot exclude the root role {role.path}")
    for excluded in env.excluded:
        if subtrees.under(role.path, excluded):
            raise ModifyError(f"environment {env_id}: {role.path} is already excluded (by {excluded})")
    members = env.members(role.path)
    if not members:
        raise ModifyError(f"environment {env_id}: role {role.path} holds no task to exclude")
    critical = any(entry.record.critical for entry in members)
    subtrees.check_running(env_id, env.fsm.state, role.path, critical, allow_running, "exclude")
    for nested in [p for p in env.excluded if subtrees.under(p, role.path)]:
        # Folded into the new, larger subtree: including it later includes them too.
        await env.mark_excluded(env.workflow.root.find(nested), False)
        del env.excluded[nested]
    await env.mark_excluded(role, True)
    env.excluded[role.path] = ""
    await env.settle_roles()
    await persist(env)
    announce_change(env, "EXCLUDE", DONE_OK, f"excluded {role.path} ({len(members)} tasks)")
    return [entry.record.id for entry in members]


async def include(env: EnvironmentState, path: str, allow_running: bool = False) -> list[str]:
    """Bring the excluded subtree at `path` to the environment's state (RESET or STOP as needed,
    CONFIGURE, then START with the current run number when RUNNING) and let it rejoin. If it
    cannot catch up, it stays excluded with the reason (`ModifyError`). Returns its task ids."""
    env_id = env.record.id
    subtrees.check_state(env_id, env.fsm.state, "include a role")
    role = subtrees.find_role(env.workflow.root, path, env_id)
    if role.path not in env.excluded:
        known = ", ".join(env.excluded) or "none"
        raise ModifyError(f"environment {env_id}: {role.path} is not excluded (excluded: {known})")
    members = env.members(role.path)
    critical = any(entry.record.critical for entry in members)
    subtrees.check_running(env_id, env.fsm.state, role.path, critical, allow_running, "include")
    announce_change(env, "INCLUDE", STARTED, f"including {role.path} ({len(members)} tasks)")
    errors = await catch_up(env, members)
    if errors:
        reason = error_summary(errors)
        env.excluded[role.path] = reason
        await persist(env)
        announce_change(env, "INCLUDE", DONE_ERROR, f"{role.path} stays excluded", error=reason)
        raise ModifyError(
            f"environment {env_id}: {role.path} could not catch up with the environment "
            f"({env.fsm.state}) and stays excluded: {reason}"
        )
    await env.mark_excluded(role, False)
    del env.excluded[role.path]
    await env.settle_roles()
    await persist(env)
    announce_change(env, "INCLUDE", DONE_OK, f"included {role.path} ({len(members)} tasks)")
    return [entry.record.id for entry in members]


async def catch_up(env: EnvironmentState, members: list[TaskEntry]) -> list[TaskError]:
    """Bring `members` to the task state that matches the environment's: down to STANDBY first
    (their configuration may be stale), then CONFIGURE and START as the environment is. A task
    that fails a step goes no further; the others go on. Returns every task's error."""
    target = subtrees.TASK_TARGET[env.fsm.state]
    errors: list[TaskError] = []

    def survivors(step_errors: list[TaskError]) -> list[TaskEntry]:
        errors.extend(step_errors)
        failed = {error.task_id for error in errors}
        return [entry for entry in members if entry.record.id not in failed]

    members = survivors(
        [
            entry.error(f"cannot catch up: {entry.record.error or 'task is not running'}")
            for entry in members
            if entry.placement is None or entry.record.status != "ACTIVE"
        ]
    )
    timeout = env.timeout(states.CONFIGURE)
    down: tuple[tuple[str, str, dict[str, str]], ...] = (
        ("RUNNING", "STOP", stop_arguments(env)),
        ("CONFIGURED", "RESET", {}),
        ("ERROR", "RECOVER", {}),
    )
    for src, event, common in down:
        targets = [entry for entry in members if entry.record.state == src]
        members = survivors(await fanout.transition_tasks(env, src, event, common, timeout, targets=targets))
    if target == "STANDBY" or not members:
        return errors
    arguments, configure_errors = configure_arguments(env, members)
    members = survivors(configure_errors)
    members = survivors(
        await fanout.transition_tasks(
            env, "STANDBY", "CONFIGURE", {}, timeout, per_task=arguments, targets=members
        )
    )
    if target == "CONFIGURED" or not members:
        return errors
    common = start_arguments(env, max(env.start_count - 1, 0))  # the current run's
    survivors(
        await fanout.transition_tasks(
            env, "CONFIGURED", "START", common, env.timeout(states.START_ACTIVITY), targets=members
        )
    )
    return errors


async def reshape(
    env: EnvironmentState,
    hooks: HookEngine,
    workflow: Workflow,
    variables: dict[str, str],
    counts: dict[str, int],
    restart: bool = False,
    reconfigure_all: bool = False,
    operation: str = "SET_VARS",
) -> ModifyResult:
    """Move to `workflow`, the environment's template expanded again with new `variables` or
    iterator `counts`: deploy and bring up only the tasks it adds, release only those it drops,
    and push the new configuration to the tasks whose CONFIGURE arguments change (now when
    CONFIGURED, at the next CONFIGURE when RUNNING or DEPLOYED). Tasks whose command line would
    change keep their process unless `restart` (then `RestartNeededError` names them and nothing
    changes). A task that cannot catch up is left excluded with the reason (`ModifyError`)."""
    env_id = env.record.id
    subtrees.check_state(env_id, env.fsm.state, f"{operation.lower().replace('_', ' ')}")
    new_roles = {role.path: role for role in workflow.tasks()}
    kept = [
        (entry, new_roles[entry.role.path]) for entry in env.entries.values() if entry.role.path in new_roles
    ]
    removed = [entry for entry in env.entries.values() if entry.role.path not in new_roles]
    to_restart = command_changes(env, kept)
    if to_restart and not restart:
        raise RestartNeededError(env_id, sorted(entry.record.name for entry in to_restart))
    announce_change(env, operation, STARTED, f"{operation}: {len(new_roles)} tasks after the change")
    old_paths = subtrees.deployable_paths(env.workflow.root)
    env.workflow = env.record.template = workflow
    env.record.user_vars, env.record.iterator_counts = dict(variables), dict(counts)
    hooks.plan = HookPlan(workflow.root)
    for entry, role in kept:
        entry.role = role
    await drop(env, removed, old_paths, subtrees.deployable_paths(workflow.root))
    added = await grow(env, old_paths)
    assert env.root is not None  # built with the environment
    env.role_refs = await env.root.proxy().role_refs()
    for entry in added:  # new roles inside an excluded subtree are deployed but stay out
        entry.record.excluded = any(subtrees.under(entry.role.path, path) for path in env.excluded)
    if to_restart:
        await fanout.kill(to_restart, "restart")
        await env.context.scheduler.proxy().release([entry.record.id for entry in to_restart])
    for entry in to_restart:
        entry.placement = None
    fresh = added + to_restart
    errors = await deploy(env, fresh) if fresh else []
    included = [e for e, _ in kept if not e.record.excluded and e not in to_restart]
    stale: list[TaskEntry] = []
    if env.fsm.state != states.DEPLOYED:
        arguments, _ = configure_arguments(env, included, keep=False)
        stale = [e for e in included if reconfigure_all or arguments.get(e.record.id) != e.record.properties]
    failed = {error.task_id for error in errors}
    bring_up = [entry for entry in fresh if entry.record.id not in failed and not entry.record.excluded]
    if env.fsm.state == states.CONFIGURED:
        bring_up += stale
    errors += await catch_up(env, bring_up)
    reason = await exclude_failed(env, errors)
    await env.settle_roles()
    await persist(env)
    result = ModifyResult(
        added=tuple(entry.record.id for entry in added),
        removed=tuple(entry.record.id for entry in removed),
        reconfigured=tuple(e.record.id for e in stale if env.fsm.state == states.CONFIGURED),
        restarted=tuple(entry.record.id for entry in to_restart),
        pending=tuple(e.record.id for e in stale if env.fsm.state == states.RUNNING),
    )
    if reason:
        announce_change(env, operation, DONE_ERROR, "tasks that could not catch up are excluded", reason)
        raise ModifyError(f"environment {env_id}: {operation}: excluded what could not catch up: {reason}")
    announce_change(env, operation, DONE_OK, result.summary())
    return result


def command_changes(env: EnvironmentState, kept: list[tuple[TaskEntry, Role]]) -> list[TaskEntry]:
    """The running tasks whose command line (command, arguments, environment) `role` changes."""
    changed = []
    for entry, role in kept:
        if entry.placement is None or entry.record.command is None:
            continue
        try:
            spec = env.launch_spec(role, entry.record.id, entry.placement)
        except TemplateError as exc:
            raise ModifyError(f"environment {env.record.id}: {exc}") from exc
        if wiring.task_command(spec) != entry.record.command:
            changed.append(entry)
    return changed


async def drop(
    env: EnvironmentState, removed: list[TaskEntry], old_paths: set[str], new_paths: set[str]
) -> None:
    """Kill and release the tasks the new workflow no longer has, and remove their roles."""
    if not removed:
        return
    for error in await fanout.kill(removed, "scale down"):
        log.warning("environment %s: %s", env.record.id, error)
    await env.context.scheduler.proxy().release([entry.record.id for entry in removed])
    for path in sorted(old_paths - new_paths):
        parent = path.rpartition(".")[0]
        if parent in new_paths and parent in env.role_refs:
            await env.role_refs[parent].proxy().remove_child(path)
    for entry in removed:
        del env.entries[entry.record.id]
        del env.record.tasks[entry.record.id]
    for path in [p for p in env.excluded if p not in new_paths]:
        del env.excluded[path]


async def grow(env: EnvironmentState, old_paths: set[str]) -> list[TaskEntry]:
    """Build the actors of the roles the new workflow adds; returns their tasks (not deployed)."""
    added: list[TaskEntry] = []
    for role in env.workflow.root.walk():
        parent = role.parent
        if parent is None or role.path in old_paths or parent.path not in old_paths:
            continue
        if role.call is not None or role.is_hook:
            continue
        for child_role, task_record, ref in (
            await env.role_refs[parent.path].proxy().add_child(role, new_task_id)
        ):
            entry = TaskEntry(child_role, task_record, ref)
            env.entries[task_record.id] = entry
            env.record.tasks[task_record.id] = task_record
            added.append(entry)
    return added


async def exclude_failed(env: EnvironmentState, errors: list[TaskError]) -> str:
    """Exclude each task that failed to come up, with its error; the reasons as text."""
    for error in errors:
        entry = env.entries.get(error.task_id)
        if entry is None or entry.record.excluded:
            continue
        await env.mark_excluded(entry.role, True)
        env.excluded[entry.role.path] = error.message
    return error_summary(errors)
