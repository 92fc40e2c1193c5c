"""The journal: where an environment stands, saved after every change, so that a core started again
on the same state directory takes it back with its tasks still running (`restore`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from actors.environment import wiring
from actors.environment.state import EnvironmentState
from actors.environment.steps.configure import configure_arguments
from aliecs.environment import fsm as states
from aliecs.executor.orders import TaskStatus
from aliecs.workflow.channels import Endpoint, bind_channels

log = logging.getLogger(__name__)

# The record's fields about runs, saved as they are.
RUN_FIELDS = (
    "run_number",
    "last_run_number",
    "run_start_time_ms",
    "run_start_completion_time_ms",
    "run_end_time_ms",
    "run_end_completion_time_ms",
    "created_ms",
)


def snapshot(env: EnvironmentState) -> dict[str, Any]:
    """Where the environment stands, as the journal keeps it (JSON)."""
    tasks = {}
    for task_id, entry in env.entries.items():
        saved: dict[str, Any] = {
            "state": entry.record.state,
            "status": entry.record.status,
            "pid": entry.record.pid,
        }
        if entry.placement is not None:
            placement = entry.placement
            saved["placement"] = {
                "host": placement.hostname,
                "address": placement.address,
                "control_port": placement.control_port,
                "endpoints": {
                    name: [e.bind_address, e.connect_address] for name, e in placement.endpoints.items()
                },
                "log_path": entry.record.log_path,
            }
        tasks[task_id] = saved
    return {
        "state": env.fsm.state,
        "run_active": env.run_active,
        "start_count": env.start_count,
        "task_ids": task_ids_in_tree_order(env),
        "tasks": tasks,
        "excluded": dict(env.excluded),
        # What the workflow is expanded with now (changed by set_vars and scale).
        "variables": dict(env.record.user_vars),
        "iterator_counts": dict(env.record.iterator_counts),
        **{name: getattr(env.record, name) for name in RUN_FIELDS},
    }


def task_ids_in_tree_order(env: EnvironmentState) -> list[str]:
    """Task ids in the order `build` creates the tasks of the current workflow (what `restore`
    expects), whatever order scaling added them in."""
    by_path = {entry.role.path: task_id for task_id, entry in env.entries.items()}
    return [by_path[role.path] for role in env.workflow.tasks() if role.path in by_path]


async def persist(env: EnvironmentState) -> None:
    """Save the environment's snapshot (when the core journals its environments)."""
    journal = env.context.journal
    if journal is not None:
        await asyncio.to_thread(journal.save, env.record.id, snapshot(env))


async def restore(
    env: EnvironmentState, saved_env: dict[str, Any], running: Mapping[str, TaskStatus]
) -> None:
    """Take back an environment whose role tree was just built with its saved task ids: its state
    and run, and each task with the process its executor still runs (`running`, by task id). A
    task whose process ended while the core was away is reported dead, which puts the environment
    in ERROR if it is critical."""
    env.fsm.restore(saved_env["state"])
    env.record.state = env.fsm.state
    env.run_active = saved_env["run_active"]
    env.start_count = saved_env["start_count"]
    for name in RUN_FIELDS:
        setattr(env.record, name, saved_env[name])
    for task_id, saved in saved_env["tasks"].items():
        entry = env.entries[task_id]
        where = saved.get("placement")
        if where is None:
            continue
        placement = await env.context.scheduler.proxy().adopt(
            task_id,
            where["host"],
            where["address"],
            where["control_port"],
            {name: Endpoint(bind, connect) for name, (bind, connect) in where["endpoints"].items()},
        )
        entry.placement = placement
        entry.record.host = placement.hostname
        assert entry.role.task is not None
        entry.binds = bind_channels(entry.role, env.task_stack(entry.role, task_id, ""))
        await entry.ref.proxy().placed(placement, where["log_path"])
        spec = env.launch_spec(entry.role, task_id, placement)  # as it was started: same inputs
        entry.record.command = wiring.task_command(spec)
        status = running.get(task_id)
        if status is not None and status.alive:
            await entry.ref.proxy().adopted(status.pid, status.state)
        elif saved["status"] == "ACTIVE":
            await entry.ref.proxy().vanished(f"process (pid {saved['pid']}) ended while the core was away")
    for path in saved_env.get("excluded", {}):
        await env.mark_excluded(env.workflow.root.find(path), True)
    env.excluded.update(saved_env.get("excluded", {}))
    if env.fsm.state in (states.CONFIGURED, states.RUNNING):
        # What their last CONFIGURE carried (the same inputs give the same arguments): a later
        # set_vars then reconfigures only the tasks whose arguments really change.
        configure_arguments(env, env.included())
    env.context.gc.settle()
    await env.settle_roles()
    log.info("environment %s restored in %s (run %s)", env.record.id, env.record.state, env.record.run_number)
