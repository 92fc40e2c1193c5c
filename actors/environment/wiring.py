"""What each task is told: its variables, its command line, its channels and its transition arguments.

Pure functions of the workflow, the tasks' placements and the environment's record: no actor is
asked anything here, so every rule of how tasks are wired together (which address a `connect`
channel resolves to, which variables a task's stack holds, what START and STOP carry) can be read
and tested on its own. The transition steps (`actors.environment.steps`) call them and send the
results.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from actors.environment.entries import TaskEntry
from aliecs.cluster.scheduler_interface import Placement
from aliecs.durations import parse_duration
from aliecs.environment.timeouts import DEFAULT_STARTUP_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_TIMEOUTS
from aliecs.errors import TaskError
from aliecs.executor.process import LaunchSpec
from aliecs.model import EnvironmentRecord, TaskCommand
from aliecs.statedir import task_log_path
from aliecs.workflow.channels import channel_keys, effective_endpoint, endpoint_keys, resolve_target
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.template import Role, Workflow

# -- a task's variables and command line ---------------------------------------------------------


def task_stack(role: Role, task_id: str, hostname: str, environment_id: str) -> dict[str, str]:
    """The variables a task of `role` sees: its role's stack with the task's own special ones."""
    assert role.task is not None
    task_class = role.task.task_class
    special = {
        "task_id": task_id,
        "task_name": role.path,
        "task_class_name": task_class.identifier,
        "task_hostname": hostname,
        "environment_id": environment_id,
        "task_parent_role": role.parent.path if role.parent else "",
    }
    return task_class.stack_for(role.stack, special)


def launch_spec(
    role: Role, task_id: str, placement: Placement, environment_id: str, log_dir: Path
) -> LaunchSpec:
    """How to start a task (data-flow or hook) of `role` on the node it was placed on."""
    assert role.task is not None
    task_class = role.task.task_class
    stack = task_stack(role, task_id, placement.hostname, environment_id)
    command = task_class.render_command(stack, role.path)
    env = {"O2_ROLE": placement.hostname, "O2_SYSTEM": "FLP", **command.env}
    arguments = command.arguments
    if placement.control_port is not None:
        env["OCC_CONTROL_PORT"] = str(placement.control_port)
        if task_class.control_mode == "fairmq":
            arguments = (*arguments, "--control-port", str(placement.control_port))
    return LaunchSpec(
        task_id=task_id,
        name=role.path,
        command=command.value,
        arguments=arguments,
        shell=command.shell,
        env=env,
        log_path=task_log_path(log_dir, environment_id, role.path, task_id),
    )


def task_command(spec: LaunchSpec) -> TaskCommand:
    """The command line a launch runs, as the task's record shows it (and `reshape` compares it)."""
    return TaskCommand(spec.command, spec.arguments, spec.env_list(), spec.shell)


# -- CONFIGURE: channels and properties ----------------------------------------------------------


def configure_arguments(
    entries: Iterable[TaskEntry], placed: Iterable[TaskEntry], environment_id: str
) -> tuple[dict[str, dict[str, str]], list[TaskError]]:
    """What CONFIGURE sends each of `entries` (by task id): its channels, `connect` targets resolved
    against the endpoints of every task in `placed` (an environment's excluded tasks too: they keep
    running), and its properties. A task whose channels or properties cannot be worked out gets an
    error instead; a task not placed gets nothing."""
    endpoints = {
        key: effective_endpoint(channel, entry.placement.endpoints[channel.name], entry.placement.address)
        for entry in placed
        if entry.placement is not None
        for channel in entry.binds
        if channel.name in entry.placement.endpoints
        for key in endpoint_keys(entry.role.path, channel)
    }
    arguments: dict[str, dict[str, str]] = {}
    errors: list[TaskError] = []
    for entry in entries:
        if entry.placement is None:
            continue
        assert entry.role.task is not None
        args: dict[str, str] = {}
        try:
            for channel in entry.binds:
                endpoint = effective_endpoint(
                    channel, entry.placement.endpoints[channel.name], entry.placement.address
                )
                args.update(channel_keys(channel, endpoint.bind_address, "bind"))
            for channel in entry.role.connect:
                address = resolve_target(channel, entry.role.path, endpoints)
                args.update(channel_keys(channel, address, "connect"))
            stack = task_stack(entry.role, entry.record.id, entry.placement.hostname, environment_id)
            args.update(entry.role.task.task_class.render_properties(stack, entry.role.path))
        except TemplateError as exc:
            errors.append(entry.error(str(exc)))
            continue
        args["environment_id"] = environment_id
        arguments[entry.record.id] = args
    return arguments, errors


# -- START and STOP: the run -------------------------------------------------------------------


def run_arguments(
    record: EnvironmentRecord, stack: Mapping[str, str], extra: dict[str, str]
) -> dict[str, str]:
    """What every task's START or STOP carries: the run number and type, then `extra`."""
    number = str(record.run_number)
    args = {
        "runNumber": number,
        "run_number": number,
        "environment_id": record.id,
        "run_type": stack.get("run_type", ""),
        "runType": stack.get("run_type", ""),
    }
    args.update(extra)
    return args


def start_arguments(record: EnvironmentRecord, stack: Mapping[str, str], count: int) -> dict[str, str]:
    """START's arguments; `count` is how many START_ACTIVITY the environment ran before (`cleanup`)."""
    start_ms = str(record.run_start_time_ms)
    return run_arguments(
        record, stack, {"cleanup": str(count), "run_start_time_ms": start_ms, "runStartTimeMs": start_ms}
    )


def stop_arguments(record: EnvironmentRecord, stack: Mapping[str, str]) -> dict[str, str]:
    """STOP's arguments: the run's end time (now, if the run has not recorded one yet)."""
    now_ms = str(record.run_end_time_ms or int(time.time() * 1000))
    return run_arguments(record, stack, {"run_end_time_ms": now_ms, "runEndTimeMs": now_ms})


def run_variables(record: EnvironmentRecord) -> dict[str, str]:
    """Variables that hooks see on top of their role's (the run number exists only during a run)."""
    number = str(record.run_number) if record.run_number else ""
    # The run's times and the last run number: integration plugins pass them on (EOR calls run
    # after the tasks' STOP, when `run_number` is already cleared).
    times = {
        "last_run_number": str(record.last_run_number) if record.last_run_number else "",
        "run_start_time_ms": str(record.run_start_time_ms) if record.run_start_time_ms else "",
        "run_end_time_ms": str(record.run_end_time_ms) if record.run_end_time_ms else "",
    }
    return {"run_number": number, "runNumber": number, **times}


# -- deadlines ---------------------------------------------------------------------------------


def event_timeout(workflow: Workflow, event: str) -> float:
    """The deadline of `event`'s task step: the workflow's `<event>_timeout`, else the default."""
    stack = workflow.root.stack
    key = f"{event.lower()}_timeout"
    if key in stack:
        try:
            return parse_duration(stack[key])
        except ValueError as exc:
            raise TemplateError(f"variable {key}: {exc}", file=workflow.source) from exc
    return DEFAULT_TIMEOUTS.get(event, DEFAULT_TIMEOUT)


def startup_timeout(workflow: Workflow, deploy_timeout: float) -> float:
    """How long a launched task may take to come up (`startup_timeout`), within DEPLOY's deadline."""
    text = workflow.root.stack.get("startup_timeout", str(DEFAULT_STARTUP_TIMEOUT))
    return min(deploy_timeout, parse_duration(text))
