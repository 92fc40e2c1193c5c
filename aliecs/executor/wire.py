"""Conversions between the executor's values (`aliecs.executor.orders`, actor messages) and the
executor protocol's messages (`protos/executor.proto`)."""

from __future__ import annotations

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


def transition_to_wire(order: TransitionOrder) -> pb.TransitionOrder:
    return pb.TransitionOrder(order.task_id, order.src_state, order.event, dict(order.arguments))


def transition_from_wire(message: pb.TransitionOrder) -> TransitionOrder:
    return TransitionOrder(message.task_id, message.src_state, message.event, dict(message.arguments))


def result_to_wire(result: TaskResult) -> pb.TaskResult:
    return pb.TaskResult(
        result.task_id,
        result.ok,
        result.state,
        result.pid,
        result.error,
        result.since_seq,
        result.port_in_use,
    )


def result_from_wire(message: pb.TaskResult) -> TaskResult:
    return TaskResult(
        message.task_id,
        message.ok,
        message.state,
        message.pid,
        message.error,
        message.since_seq,
        message.port_in_use,
    )


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
