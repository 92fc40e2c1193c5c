"""DEPLOY: place every task on a node, launch its process there, and wait for it to come up.

Placement is asked for all tasks at once (the scheduler answers per task: a placement or the reason
there is none). A critical task that cannot be placed, or whose channels or ports are wrong, fails
the deployment before anything starts. The others are told where they run, then launched in one
batch per node; a task whose control port turned out to be taken on its node is launched again on
another port a few times. Also used to bring up tasks added later (`reshape`) or restarted
(`recover`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import cast

from actors.environment import fanout, wiring
from actors.environment.entries import TaskEntry
from actors.environment.state import EnvironmentState
from actors.task import TaskOutcome
from aliecs.cluster.placement import PlacementRequest
from aliecs.cluster.ports import PortExhaustedError, parse_port_list
from aliecs.cluster.scheduler_interface import (
    ChannelRequest,
    DeployRequest,
    Placement,
    PlacementFailure,
    answer,
)
from aliecs.environment import fsm as states
from aliecs.errors import TaskError
from aliecs.executor.link import ExecutorLink
from aliecs.executor.orders import LaunchOrder, TaskResult
from aliecs.executor.process import LaunchSpec
from aliecs.workflow.channels import bind_channels
from aliecs.workflow.errors import TemplateError

log = logging.getLogger(__name__)

# Launches of one task again on another control port when its port was taken on the node.
PORT_RETRIES = 3


async def deploy(env: EnvironmentState, entries: list[TaskEntry] | None = None) -> list[TaskError]:
    """Deploy `entries` (by default every task of the environment); the tasks' errors."""
    targets = list(env.entries.values()) if entries is None else entries
    errors: list[TaskError] = []
    requests = []
    for entry in targets:
        assert entry.role.task is not None
        task_class = entry.role.task.task_class
        try:
            entry.binds = bind_channels(entry.role, env.task_stack(entry.role, entry.record.id, ""))
        except TemplateError as exc:
            errors.append(entry.error(str(exc)))
            continue
        try:  # cached per descriptor: expanded once however many tasks load it
            static_ports = parse_port_list(task_class.ports, f"task class {task_class.identifier}")
        except ValueError as exc:
            errors.append(entry.error(str(exc)))
            continue
        requests.append(
            DeployRequest(
                PlacementRequest(
                    entry.record.id,
                    entry.record.name,
                    task_class.wants,
                    {**task_class.constraints, **entry.role.constraints},
                    static_ports=static_ports,
                ),
                channels=tuple(ChannelRequest(ch.name, ch.addressing) for ch in entry.binds),
                controllable=task_class.control_mode != "basic",
            )
        )
    scheduler = env.context.scheduler
    placements = await answer(scheduler.proxy().place(requests))
    to_start: list[tuple[TaskEntry, LaunchSpec]] = []
    for placement in placements:
        entry = env.entries[placement.task_id]
        if isinstance(placement, PlacementFailure):
            entry.ref.proxy().mark_undeployable(placement.reason)
            errors.append(entry.error(f"undeployable: {placement.reason}"))
            continue
        entry.placement = placement
        entry.record.host = placement.hostname
        try:
            spec = env.launch_spec(entry.role, entry.record.id, placement)
        except TemplateError as exc:
            errors.append(entry.error(str(exc)))
            continue
        to_start.append((entry, spec))
        entry.record.command = wiring.task_command(spec)
    if any(error.critical for error in errors):
        # Fail fast: do not start anything when a critical task cannot run at all.
        await scheduler.proxy().release([entry.record.id for entry in targets])
        return errors
    timeout = env.timeout(states.DEPLOY)
    startup = wiring.startup_timeout(env.workflow, timeout)
    specs = {entry.record.id: spec for entry, spec in to_start}
    started = [entry for entry, _ in to_start]
    # Told where they run before anything starts: a task dying at once is then heard of.
    await asyncio.gather(
        *(
            # placement: set for every entry of to_start above
            entry.ref.proxy().placed(
                cast("Placement", entry.placement), str(specs[entry.record.id].log_path or "")
            )
            for entry in started
        )
    )

    def launch(link: ExecutorLink, group: list[TaskEntry]) -> Awaitable[list[TaskResult]]:
        orders = []
        for entry in group:
            assert entry.placement is not None
            controllable = entry.placement.control_port is not None
            orders.append(LaunchOrder(specs[entry.record.id], entry.placement.control_port, controllable))
        return link.launch(orders, startup)

    async def send(link: ExecutorLink, group: list[TaskEntry]) -> list[TaskResult]:
        results = await launch(link, group)
        for _attempt in range(PORT_RETRIES):
            taken = [env.entries[result.task_id] for result in results if result.port_in_use]
            if not taken:
                break
            for entry in list(taken):
                try:
                    await move_control_port(env, entry, specs)
                except PortExhaustedError:  # nowhere else to go: its failure stands
                    taken.remove(entry)
            if not taken:
                break
            again = {result.task_id: result for result in await launch(link, taken)}
            results = [again.get(result.task_id, result) for result in results]
        return results

    def apply(entry: TaskEntry, result: TaskResult) -> Awaitable[TaskOutcome]:
        return entry.ref.proxy().deployed(result)  # type: ignore[no-any-return]

    errors += await fanout.per_node(started, send, apply, timeout, "DEPLOY")
    return errors


async def move_control_port(env: EnvironmentState, entry: TaskEntry, specs: dict[str, LaunchSpec]) -> None:
    """Give a task whose control port was taken on its node another one, before launching it again."""
    assert entry.placement is not None
    old = entry.placement.control_port
    entry.placement = await env.context.scheduler.proxy().move_control_port(entry.placement)
    spec = specs[entry.record.id] = env.launch_spec(entry.role, entry.record.id, entry.placement)
    entry.record.command = wiring.task_command(spec)
    await entry.ref.proxy().placed(entry.placement, str(spec.log_path or ""))
    log.warning(
        "environment %s: task %s: control port %s was taken on %s; launching it again on port %s",
        env.record.id,
        entry.record.name,
        old,
        entry.placement.hostname,
        entry.placement.control_port,
    )
