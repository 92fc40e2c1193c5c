"""Conversions between the executor's values (`aliecs.executor.orders`, actor messages) and the
executor protocol's messages (`protos/executor.proto`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actors.messages import BasicTaskTerminated, DeviceEvent, ProcessExited
from aliecs.executor.orders import LaunchOrder, TaskResult, TaskStatus, TransitionOrder
from aliecs.executor.process import ExitInfo, LaunchSpec
from aliecs.generated import aliecs_executor as pb


def launch_to_wire(order: LaunchOrder) -> pb.LaunchOrder:
    spec = order.spec
    return pb.LaunchOrder(
        task_id=spec.task_id,
        name=spec.name,
        command=spec.command,
        arguments=list(spec.arguments),
        shell=spec.shell,
        env=dict(spec.env),
        log_path=str(spec.log_path or ""),
        controllable=order.controllable,
        control_port=order.control_port or 0,
    )


def launch_from_wire(message: pb.LaunchOrder, outlive_executor: bool) -> LaunchOrder:
    """With `outlive_executor`, the task process survives its executor (a restarted executor adopts
    it again); without, it dies with it (test harnesses, which must never leak a process)."""
    spec = LaunchSpec(
        task_id=message.task_id,
        name=message.name,
        command=message.command,
        arguments=tuple(message.arguments),
        shell=message.shell,
        env=dict(message.env),
        log_path=Path(message.log_path) if message.log_path else None,
        die_with_parent=not outlive_executor,
    )
    return LaunchOrder(spec, message.control_port or None, message.controllable)


def transitions_to_wire(
    orders: Sequence[TransitionOrder], common: dict[str, str], timeout: float
) -> pb.TransitionBatch:
    """Orders without arguments of their own that share the batch's step travel as bare task ids
    (`uniform_task_ids`): one string per task instead of one message per task."""
    batch = pb.TransitionBatch(timeout=timeout, common_arguments=common)
    if orders:
        batch.src_state, batch.event = orders[0].src_state, orders[0].event
    uniform: list[str] = []
    for order in orders:
        if not order.arguments and (order.src_state, order.event) == (batch.src_state, batch.event):
            uniform.append(order.task_id)
        else:
            batch.tasks.append(
                pb.TransitionOrder(order.task_id, order.src_state, order.event, dict(order.arguments))
            )
    batch.uniform_task_ids = uniform
    return batch


def transitions_from_wire(batch: pb.TransitionBatch) -> list[TransitionOrder]:
    orders = [
        TransitionOrder(message.task_id, message.src_state, message.event, dict(message.arguments))
        for message in batch.tasks
    ]
    src, event = batch.src_state, batch.event
    orders.extend(TransitionOrder(task_id, src, event, {}) for task_id in batch.uniform_task_ids)
    return orders


def results_to_wire(results: Sequence[TaskResult]) -> pb.BatchReply:
    """Answers with an error each keep their own message; the others are grouped by (ok, state,
    since_seq), which for a healthy node is one group for the whole batch."""
    reply = pb.BatchReply()
    groups: dict[tuple[bool, str, int], pb.TaskResultGroup] = {}
    for result in results:
        if result.error or result.port_in_use:
            reply.results.append(
                pb.TaskResult(
                    result.task_id,
                    result.ok,
                    result.state,
                    result.pid,
                    result.error,
                    result.since_seq,
                    result.port_in_use,
                )
            )
            continue
        key = (result.ok, result.state, result.since_seq)
        group = groups.get(key)
        if group is None:
            group = groups[key] = pb.TaskResultGroup(result.ok, result.state, result.since_seq, [], [])
        group.task_ids.append(result.task_id)
        group.pids.append(result.pid)
    reply.groups = list(groups.values())
    return reply


def results_from_wire(reply: pb.BatchReply) -> list[TaskResult]:
    results = [
        TaskResult(
            message.task_id,
            message.ok,
            message.state,
            message.pid,
            message.error,
            message.since_seq,
            message.port_in_use,
        )
        for message in reply.results
    ]
    for group in reply.groups:
        ok, state, since = group.ok, group.state, group.since_seq
        if len(group.pids) != len(group.task_ids):
            raise ValueError(f"a result group names {len(group.task_ids)} tasks and {len(group.pids)} pids")
        results.extend(
            TaskResult(task_id, ok, state, pid, "", since)
            for task_id, pid in zip(group.task_ids, group.pids, strict=True)
        )
    return results


def status_to_wire(status: TaskStatus) -> pb.TaskStatus:
    return pb.TaskStatus(
        task_id=status.task_id,
        name=status.name,
        pid=status.pid,
        control_port=status.control_port,
        state=status.state,
        alive=status.alive,
        controllable=status.controllable,
    )


def status_from_wire(message: pb.TaskStatus) -> TaskStatus:
    return TaskStatus(
        message.task_id,
        message.name,
        message.pid,
        message.control_port,
        message.state,
        message.alive,
        message.controllable,
    )


def event_to_wire(seq: int, message: Any) -> pb.TaskEvent:
    if isinstance(message, ProcessExited):
        return pb.TaskEvent(
            seq=seq,
            task_id=message.task_id,
            kind=pb.TaskEventKind(pb.TaskEventKind.EXITED),
            returncode=message.exit.returncode,
            detail=message.exit.detail,
            expected=message.expected,
            log_tail=list(message.log_tail),
        )
    if isinstance(message, BasicTaskTerminated):
        return pb.TaskEvent(
            seq=seq,
            task_id=message.task_id,
            kind=pb.TaskEventKind(pb.TaskEventKind.BASIC_TERMINATED),
            returncode=message.exit.returncode,
            log_tail=list(message.log_tail),
        )
    assert isinstance(message, DeviceEvent), message
    return pb.TaskEvent(
        seq=seq,
        task_id=message.task_id,
        kind=pb.TaskEventKind(pb.TaskEventKind.DEVICE),
        device_event=message.type,
    )


def event_from_wire(message: pb.TaskEvent) -> ProcessExited | BasicTaskTerminated | DeviceEvent:
    seq = message.seq
    if message.kind == pb.TaskEventKind.EXITED:
        info = ExitInfo(message.returncode, detail=message.detail)
        return ProcessExited(message.task_id, info, message.expected, tuple(message.log_tail), seq)
    if message.kind == pb.TaskEventKind.BASIC_TERMINATED:
        return BasicTaskTerminated(
            message.task_id, ExitInfo(message.returncode), tuple(message.log_tail), seq
        )
    return DeviceEvent(message.task_id, message.device_event, seq)
