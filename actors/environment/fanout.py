"""Sending one step of a transition to many tasks: one request per node, under one deadline.

The core sends each node's executor one batch per step (launch, transition, kill) and hands each
task's answer to its task actor. Every node is asked concurrently; a node that does not answer
within the deadline (plus a grace for the answer to travel) or cannot be reached fails its tasks,
naming the node: stragglers are reported, never waited on forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from actors.environment.entries import TaskEntry
from actors.environment.state import EnvironmentState
from actors.task import TaskOutcome
from aliecs.errors import TaskError
from aliecs.executor.link import ExecutorLink
from aliecs.executor.orders import TaskResult, TransitionOrder

# Grace on top of a deadline before the environment stops waiting for a task actor's answer.
FAN_OUT_MARGIN = 5.0
# How long killing a batch of tasks may take before its node is reported.
KILL_TIMEOUT = 30.0

Send = Callable[[ExecutorLink, list[TaskEntry]], Awaitable[list[TaskResult]]]
Apply = Callable[[TaskEntry, TaskResult], Awaitable[TaskOutcome]]


async def per_node(
    entries: list[TaskEntry], send: Send, apply: Apply, timeout: float, what: str
) -> list[TaskError]:
    """One request per node (`send` with that node's entries), all nodes concurrently under one
    deadline; each task's answer is handed to its actor by `apply`. A node whose executor does not
    answer in time, or cannot be reached, fails its tasks naming the node."""
    if not entries:
        return []
    groups: dict[ExecutorLink, list[TaskEntry]] = {}
    for entry in entries:
        assert entry.placement is not None
        groups.setdefault(entry.placement.executor, []).append(entry)
    futures = {asyncio.ensure_future(send(link, group)): (link, group) for link, group in groups.items()}
    _done, pending = await asyncio.wait(futures, timeout=timeout + FAN_OUT_MARGIN)
    applied: list[tuple[TaskEntry, Awaitable[TaskOutcome]]] = []
    for future, (link, group) in futures.items():
        if future in pending:
            future.cancel()
            reason = f"{what}: no answer from the executor of node {link.hostname} within {timeout:g}s"
        elif future.exception() is not None:
            reason = f"{what}: {future.exception()}"
        else:
            answers = {result.task_id: result for result in future.result()}
            for entry in group:
                answer = answers.get(entry.record.id)
                if answer is None:
                    answer = TaskResult(
                        entry.record.id, False, "ERROR", error=f"{what}: no answer for the task"
                    )
                applied.append((entry, apply(entry, answer)))
            continue
        applied.extend((entry, entry.ref.proxy().failed(reason)) for entry in group)
    outcomes = await asyncio.gather(*(outcome for _entry, outcome in applied))
    return [
        entry.error(outcome.error)
        for (entry, _), outcome in zip(applied, outcomes, strict=True)
        if not outcome.ok
    ]


async def transition_tasks(
    env: EnvironmentState,
    src: str,
    event: str,
    common: dict[str, str],
    timeout: float,
    per_task: Mapping[str, dict[str, str]] | None = None,
    targets: list[TaskEntry] | None = None,
) -> list[TaskError]:
    """Send `event` to `targets` (by default: the environment's tasks in `src`, and its critical
    tasks whatever their state, so that a critical task in the wrong state fails the transition,
    naming it). `common` goes to every task, `per_task` adds each task's own arguments."""
    if targets is None:
        targets = [
            e
            for e in env.entries.values()
            if (e.record.state == src or e.record.critical) and not e.record.excluded
        ]
    errors: list[TaskError] = []
    ready = []
    for entry in targets:
        if entry.placement is None or entry.record.status != "ACTIVE":
            errors.append(entry.error(entry.record.error or "task is not running"))
        elif entry.record.state != src:
            errors.append(entry.error(f"cannot {event}: task is {entry.record.state}, not {src}"))
        else:
            ready.append(entry)
    arguments = per_task or {}

    def send(link: ExecutorLink, group: list[TaskEntry]) -> Awaitable[list[TaskResult]]:
        orders = [
            TransitionOrder(entry.record.id, src, event, arguments.get(entry.record.id, {}))
            for entry in group
        ]
        return link.transition(orders, common, timeout)

    def apply(entry: TaskEntry, result: TaskResult) -> Awaitable[TaskOutcome]:
        return entry.ref.proxy().transitioned(result)  # type: ignore[no-any-return]

    return errors + await per_node(ready, send, apply, timeout, event)


async def kill(entries: list[TaskEntry], what: str) -> list[TaskError]:
    """Walk the tasks to DONE and make sure their processes are gone (one batch per node)."""
    placed = [entry for entry in entries if entry.placement is not None]
    for entry in entries:
        if entry.placement is None:
            await entry.ref.proxy().killed(None)

    def send(link: ExecutorLink, group: list[TaskEntry]) -> Awaitable[list[TaskResult]]:
        return link.kill([entry.record.id for entry in group])

    def apply(entry: TaskEntry, result: TaskResult) -> Awaitable[TaskOutcome]:
        return entry.ref.proxy().killed(result)  # type: ignore[no-any-return]

    return await per_node(placed, send, apply, KILL_TIMEOUT, what)
