"""Turn aliecs.events dataclasses into `events.Event` protobuf envelopes (the wire format of Subscribe
and of the audit log)."""

from __future__ import annotations

from aliecs import events as ev
from aliecs.generated import common as common_pb
from aliecs.generated import events as pb

_OP_STATUS: dict[str, int] = {
    "": pb.OpStatus.NULL,
    ev.STARTED: pb.OpStatus.STARTED,
    ev.ONGOING: pb.OpStatus.ONGOING,
    ev.DONE_OK: pb.OpStatus.DONE_OK,
    ev.DONE_ERROR: pb.OpStatus.DONE_ERROR,
    ev.DONE_TIMEOUT: pb.OpStatus.DONE_TIMEOUT,
}


def op_status(name: str) -> pb.OpStatus:
    return pb.OpStatus(_OP_STATUS.get(name, 0))


def environment_id(event: ev.Event) -> str:
    """The environment an event belongs to ("" for core-wide events)."""
    return getattr(event, "environment_id", "")


def _user(user: ev.RequestUser) -> common_pb.User:
    """Unknown ids stay absent (they are optional on the wire), as the original sends them."""
    return common_pb.User(name=user.name, id=user.id or None, external_id=user.external_id or None)


def _template(ref: ev.WorkflowTemplateRef) -> common_pb.WorkflowTemplateInfo:
    return common_pb.WorkflowTemplateInfo(
        name=ref.name, description=ref.description, path=ref.path, public=ref.public
    )


def to_proto(event: ev.Event) -> pb.Event:
    envelope = pb.Event(timestamp=event.timestamp_ns // 1_000_000, timestamp_nano=event.timestamp_ns)
    if isinstance(event, ev.EnvironmentEvent):
        envelope.environment_event = pb.EvEnvironmentEvent(
            environment_id=event.environment_id,
            state=event.state,
            run_number=event.run_number,
            error=event.error,
            message=event.message,
            transition=event.transition,
            transition_step=event.transition_step,
            transition_status=op_status(event.transition_status),
            vars=dict(event.vars),
        )
        if event.last_request_user is not None:
            envelope.environment_event.last_request_user = _user(event.last_request_user)
        if event.workflow_template is not None:
            envelope.environment_event.workflow_template_info = _template(event.workflow_template)
    elif isinstance(event, ev.TaskEvent):
        envelope.task_event = pb.EvTaskEvent(
            name=event.name,
            taskid=event.task_id,
            state=event.state,
            status=event.status,
            hostname=event.hostname,
            class_name=event.class_name,
            traits=pb.Traits(critical=event.critical),
            environment_id=event.environment_id,
            path=event.path,
            error=event.error,
            device_event=event.device_event,
        )
    elif isinstance(event, ev.RoleEvent):
        envelope.role_event = pb.EvRoleEvent(
            name=event.name,
            status=event.status,
            state=event.state,
            role_path=event.role_path,
            environment_id=event.environment_id,
        )
    elif isinstance(event, ev.RunEvent):
        envelope.run_event = pb.EvRunEvent(
            environment_id=event.environment_id,
            run_number=event.run_number,
            state=event.state,
            error=event.error,
            transition=event.transition,
            transition_status=op_status(event.transition_status),
        )
        if event.last_request_user is not None:
            envelope.run_event.last_request_user = _user(event.last_request_user)
    elif isinstance(event, ev.CallEvent):
        envelope.call_event = pb.EvCallEvent(
            func=event.func,
            call_status=op_status(event.status),
            output=event.output,
            error=event.error,
            environment_id=event.environment_id,
            path=event.path,
            traits=pb.Traits(
                trigger=event.trigger, await_=event.await_, timeout=event.timeout, critical=event.critical
            ),
        )
    elif isinstance(event, ev.IntegratedServiceEvent):
        envelope.integrated_service_event = pb.EvIntegratedServiceEvent(
            name=event.name,
            error=event.error,
            operation_name=event.operation_name,
            operation_status=op_status(event.operation_status),
            operation_step=event.operation_step,
            operation_step_status=op_status(event.operation_step_status),
            environment_id=event.environment_id,
            payload=event.payload,
        )
    elif isinstance(event, ev.CoreStartEvent):
        envelope.core_start_event = pb.EvMetaEventCoreStart(framework_id=event.framework_id)
    else:  # pragma: no cover - a new event type without a mapping is a bug caught by tests
        raise TypeError(f"no protobuf mapping for event {event!r}")
    return envelope
