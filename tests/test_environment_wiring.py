"""What tasks are told, computed without any actor: stacks, command lines, CONFIGURE channels,
START/STOP arguments and deadlines (`actors.environment.wiring`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from actors.environment.entries import TaskEntry
from actors.environment.wiring import (
    configure_arguments,
    event_timeout,
    launch_spec,
    start_arguments,
    stop_arguments,
    task_stack,
)
from aliecs.cluster.scheduler_interface import Placement
from aliecs.environment.timeouts import DEFAULT_TIMEOUTS
from aliecs.model import EnvironmentRecord, TaskRecord
from aliecs.workflow.channels import Endpoint, bind_channels
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.repository import default_repository
from aliecs.workflow.template import Role, Workflow, load_workflow

ENV_ID = "env0"
# The executor link is never used by the pure functions: a placement only needs to say where.
NO_LINK = cast(Any, None)


def copypush(**variables: str) -> Workflow:
    return load_workflow(default_repository(), "copypush", {"last_sink": "1", **variables})


def entry(role: Role, task_id: str, placement: Placement | None) -> TaskEntry:
    record = TaskRecord(id=task_id, name=role.path, class_name="copypush", role_path=role.path, critical=True)
    task = TaskEntry(role, record, cast(Any, None), placement=placement)
    task.binds = bind_channels(role, task_stack(role, task_id, "", ENV_ID))
    return task


def placed(role: Role, task_id: str, host: str, port: int | None = 31000, **endpoints: Endpoint) -> TaskEntry:
    return entry(role, task_id, Placement(task_id, host, f"{host}.addr", NO_LINK, port, dict(endpoints)))


def roles(workflow: Workflow) -> dict[str, Role]:
    return {role.path.rpartition(".")[2]: role for role in workflow.root.task_roles()}


def test_a_task_stack_holds_its_own_special_variables() -> None:
    sink = roles(copypush())["sink0"]
    stack = task_stack(sink, "t1", "node1", ENV_ID)
    assert stack["task_id"] == "t1"
    assert stack["task_hostname"] == "node1"
    assert stack["environment_id"] == ENV_ID
    assert stack["task_name"] == sink.path
    assert stack["task_parent_role"] == "copypush"


def test_a_launch_spec_renders_the_command_for_its_node(tmp_path: Path) -> None:
    sink = roles(copypush())["sink0"]
    placement = Placement("t1", "node1", "node1.addr", NO_LINK, 31005)
    spec = launch_spec(sink, "t1", placement, ENV_ID, tmp_path)
    assert spec.command == "aliecs-copypush"
    assert "--id=t1" in spec.arguments
    assert spec.env["O2_ROLE"] == "node1" and spec.env["O2_PARTITION"] == ENV_ID
    assert spec.env["OCC_CONTROL_PORT"] == "31005"
    assert spec.log_path is not None and tmp_path in Path(spec.log_path).parents
    # Without a control port (a hook task), nothing says where to listen.
    hook = launch_spec(sink, "t1", Placement("t1", "node1", "node1.addr", NO_LINK, None), ENV_ID, tmp_path)
    assert "OCC_CONTROL_PORT" not in hook.env


def test_configure_connects_each_sink_to_the_sampler_it_targets() -> None:
    found = roles(copypush())
    sampler = placed(found["sampler"], "s", "n1", data=Endpoint("tcp://*:20001", "tcp://n1.addr:20001"))
    sinks = [placed(found[f"sink{i}"], f"k{i}", "n2") for i in range(2)]
    unplaced = entry(found["sink1"], "k9", None)
    arguments, errors = configure_arguments([sampler, *sinks, unplaced], [sampler, *sinks], ENV_ID)
    assert errors == []
    assert set(arguments) == {"s", "k0", "k1"}  # a task not placed is told nothing
    assert arguments["s"]["chans.data.0.address"] == "tcp://*:20001"
    assert arguments["s"]["chans.data.0.method"] == "bind"
    for sink in ("k0", "k1"):
        assert arguments[sink]["chans.data.0.address"] == "tcp://n1.addr:20001"
        assert arguments[sink]["chans.data.0.method"] == "connect"
        assert arguments[sink]["environment_id"] == ENV_ID


def test_configure_names_a_connect_target_nobody_binds() -> None:
    found = roles(copypush())
    sink = placed(found["sink0"], "k0", "n2")
    arguments, errors = configure_arguments([sink], [sink], ENV_ID)  # the sampler is not placed
    assert arguments == {}
    assert len(errors) == 1 and errors[0].task_id == "k0"
    assert "no task binds that channel" in errors[0].message


def test_start_and_stop_carry_the_run() -> None:
    record = EnvironmentRecord(id=ENV_ID, workflow="w", created_ms=0, user_vars={})
    record.run_number, record.run_start_time_ms, record.run_end_time_ms = 7, 1000, 2000
    start = start_arguments(record, {"run_type": "PHYSICS"}, 2)
    assert start["runNumber"] == start["run_number"] == "7"
    assert start["runType"] == start["run_type"] == "PHYSICS"
    assert start["cleanup"] == "2" and start["run_start_time_ms"] == "1000"
    stop = stop_arguments(record, {})
    assert stop["run_end_time_ms"] == stop["runEndTimeMs"] == "2000" and stop["run_type"] == ""


def test_a_transition_deadline_comes_from_the_workflow_or_the_default() -> None:
    assert event_timeout(copypush(), "CONFIGURE") == DEFAULT_TIMEOUTS["CONFIGURE"]
    assert event_timeout(copypush(configure_timeout="3s"), "CONFIGURE") == 3.0
    with pytest.raises(TemplateError, match="variable configure_timeout"):
        event_timeout(copypush(configure_timeout="soon"), "CONFIGURE")
