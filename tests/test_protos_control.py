"""o2control.proto, events.proto and common.proto speak the original AliECS wire format.

protoc (grpc_tools) compiles our files into descriptors whose package, service, RPC, message, enum
and field names, numbers and types are compared with the original protocol's (interface facts
written out below), and bytes made by our betterproto classes are decoded by the reference
protobuf runtime. The "generated code is up to date" check for all protos is in test_protos.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from aliecs.generated import common as common_pb
from aliecs.generated import events as events_pb
from aliecs.generated import o2control as pb
from aliecs.protos_build import DEFAULT_PROTOS_DIR

pytestmark = pytest.mark.timeout(60)

FDP = descriptor_pb2.FieldDescriptorProto
S, B, I32, U32, I64, E, M = (
    FDP.TYPE_STRING,
    FDP.TYPE_BOOL,
    FDP.TYPE_INT32,
    FDP.TYPE_UINT32,
    FDP.TYPE_INT64,
    FDP.TYPE_ENUM,
    FDP.TYPE_MESSAGE,
)

# message -> {field: (number, type)} for the messages clients depend on most.
O2CONTROL_FIELDS: dict[str, dict[str, tuple[int, int]]] = {
    "EnvironmentInfo": {
        "id": (1, S),
        "createdWhen": (2, I64),
        "state": (3, S),
        "tasks": (4, M),
        "rootRole": (5, S),
        "currentRunNumber": (6, U32),
        "defaults": (7, M),
        "vars": (8, M),
        "userVars": (9, M),
        "numberOfFlps": (10, I32),
        "includedDetectors": (11, S),
        "description": (12, S),
        "numberOfHosts": (13, I32),
        "integratedServicesData": (14, M),
        "numberOfTasks": (15, I32),
        "currentTransition": (16, S),
        "numberOfActiveTasks": (17, I32),
        "numberOfInactiveTasks": (18, I32),
    },
    "NewEnvironmentRequest": {
        "workflowTemplate": (1, S),
        "vars": (2, M),
        "public": (3, B),
        "autoTransition": (4, B),
        "requestUser": (5, M),
    },
    "NewAutoEnvironmentRequest": {
        "workflowTemplate": (1, S),
        "vars": (2, M),
        "id": (3, S),
        "requestUser": (4, M),
    },
    "ControlEnvironmentRequest": {"id": (1, S), "type": (2, E), "requestUser": (3, M)},
    "ControlEnvironmentReply": {
        "id": (1, S),
        "state": (2, S),
        "currentRunNumber": (3, U32),
        "startOfTransition": (4, I64),
        "endOfTransition": (5, I64),
        "transitionDuration": (6, I64),
        "timestamp": (7, I64),
    },
    "DestroyEnvironmentRequest": {
        "id": (1, S),
        "keepTasks": (2, B),
        "allowInRunningState": (3, B),
        "force": (4, B),
        "requestUser": (5, M),
    },
    "ShortTaskInfo": {
        "name": (1, S),
        "locked": (2, B),
        "taskId": (3, S),
        "status": (4, S),
        "state": (5, S),
        "className": (6, S),
        "deploymentInfo": (7, M),
        "pid": (8, S),
        "sandboxStdout": (9, S),
        "claimable": (10, B),
        "critical": (11, B),
    },
    "RoleInfo": {
        "name": (1, S),
        "status": (2, S),
        "state": (3, S),
        "fullPath": (4, S),
        "taskIds": (5, S),
        "roles": (6, M),
        "defaults": (7, M),
        "vars": (8, M),
        "userVars": (9, M),
        "consolidatedStack": (10, M),
        "description": (11, S),
    },
    "TaskInfo": {
        "shortInfo": (1, M),
        "inboundChannels": (3, M),
        "outboundChannels": (4, M),
        "commandInfo": (5, M),
        "taskPath": (6, S),
        "envId": (7, S),
        "properties": (9, M),
    },
    "GetFrameworkInfoReply": {
        "frameworkId": (1, S),
        "environmentsCount": (2, I32),
        "tasksCount": (3, I32),
        "state": (4, S),
        "hostsCount": (5, I32),
        "instanceName": (6, S),
        "version": (7, M),
        "configurationEndpoint": (8, S),
        "detectorsInInstance": (9, S),
        "activeDetectors": (10, S),
        "availableDetectors": (11, S),
        "timestamp": (12, I64),
    },
    "VarSpecMessage": {
        "defaultValue": (1, S),
        "type": (2, E),
        "label": (3, S),
        "description": (4, S),
        "widget": (5, E),
        "panel": (6, S),
        "allowedValues": (7, S),
        "index": (8, I32),
        "visibleIf": (9, S),
        "enabledIf": (10, S),
        "rows": (11, U32),
    },
    "WorkflowTemplateInfo": {
        "repo": (1, S),
        "template": (2, S),
        "revision": (3, S),
        "varSpecMap": (4, M),
        "description": (5, S),
    },
    "GetEnvironmentRequest": {"id": (1, S), "showWorkflowTree": (2, B)},
    "GetEnvironmentReply": {
        "environment": (1, M),
        "workflow": (2, M),
        "public": (3, B),
        "timestamp": (4, I64),
    },
    "CleanupTasksReply": {"killedTasks": (1, M), "runningTasks": (2, M), "timestamp": (3, I64)},
    "IntegratedServiceInfo": {
        "name": (1, S),
        "enabled": (2, B),
        "endpoint": (3, S),
        "connectionState": (4, S),
        "data": (5, S),
    },
}

EVENTS_FIELDS: dict[str, dict[str, tuple[int, int]]] = {
    "Event": {
        "timestamp": (1, I64),
        "timestampNano": (2, I64),
        "environmentEvent": (11, M),
        "taskEvent": (12, M),
        "roleEvent": (13, M),
        "callEvent": (14, M),
        "integratedServiceEvent": (15, M),
        "runEvent": (16, M),
        "frameworkEvent": (101, M),
        "mesosHeartbeatEvent": (102, M),
        "coreStartEvent": (103, M),
        "beamModeEvent": (200, M),
    },
    "Ev_EnvironmentEvent": {
        "environmentId": (1, S),
        "state": (2, S),
        "runNumber": (3, U32),
        "error": (4, S),
        "message": (5, S),
        "transition": (6, S),
        "transitionStep": (7, S),
        "transitionStatus": (8, E),
        "vars": (9, M),
        "lastRequestUser": (10, M),
        "workflowTemplateInfo": (11, M),
    },
    "Ev_TaskEvent": {
        "name": (1, S),
        "taskid": (2, S),
        "state": (3, S),
        "status": (4, S),
        "hostname": (5, S),
        "className": (6, S),
        "traits": (7, M),
        "environmentId": (8, S),
        "path": (9, S),
        "deviceEvent": (100, S),  # aliecs extension
    },
    "Ev_RoleEvent": {
        "name": (1, S),
        "status": (2, S),
        "state": (3, S),
        "rolePath": (4, S),
        "environmentId": (5, S),
    },
    "Ev_RunEvent": {
        "environmentId": (1, S),
        "runNumber": (2, U32),
        "state": (3, S),
        "error": (4, S),
        "transition": (5, S),
        "transitionStatus": (6, E),
        "lastRequestUser": (8, M),  # 7 is reserved (a removed `vars`)
    },
    "Ev_CallEvent": {
        "func": (1, S),
        "callStatus": (2, E),
        "return": (3, S),
        "traits": (4, M),
        "output": (5, S),
        "error": (6, S),
        "environmentId": (7, S),
        "path": (8, S),
    },
    "Traits": {"trigger": (1, S), "await": (2, S), "timeout": (3, S), "critical": (4, B)},
    "Ev_MetaEvent_CoreStart": {"frameworkId": (1, S)},
}

COMMON_FIELDS = {
    "User": {"externalId": (1, I32), "id": (2, I32), "name": (3, S)},
    "WorkflowTemplateInfo": {"name": (1, S), "description": (2, S), "path": (3, S), "public": (4, B)},
    "BeamInfo": {
        "stableBeamsStart": (1, I64),
        "stableBeamsEnd": (2, I64),
        "fillNumber": (3, I32),
        "fillingSchemeName": (4, S),
        "beamType": (5, S),
        "beamMode": (6, E),
    },
}

RPCS = {
    "GetFrameworkInfo": ("GetFrameworkInfoRequest", "GetFrameworkInfoReply"),
    "GetEnvironments": ("GetEnvironmentsRequest", "GetEnvironmentsReply"),
    "NewAutoEnvironment": ("NewAutoEnvironmentRequest", "NewAutoEnvironmentReply"),
    "NewEnvironment": ("NewEnvironmentRequest", "NewEnvironmentReply"),
    "GetEnvironment": ("GetEnvironmentRequest", "GetEnvironmentReply"),
    "ControlEnvironment": ("ControlEnvironmentRequest", "ControlEnvironmentReply"),
    "DestroyEnvironment": ("DestroyEnvironmentRequest", "DestroyEnvironmentReply"),
    "GetActiveDetectors": ("Empty", "GetActiveDetectorsReply"),
    "GetAvailableDetectors": ("Empty", "GetAvailableDetectorsReply"),
    "NewEnvironmentAsync": ("NewEnvironmentRequest", "NewEnvironmentReply"),
    "GetTasks": ("GetTasksRequest", "GetTasksReply"),
    "GetTask": ("GetTaskRequest", "GetTaskReply"),
    "CleanupTasks": ("CleanupTasksRequest", "CleanupTasksReply"),
    "GetRoles": ("GetRolesRequest", "GetRolesReply"),
    "GetWorkflowTemplates": ("GetWorkflowTemplatesRequest", "GetWorkflowTemplatesReply"),
    "ListRepos": ("ListReposRequest", "ListReposReply"),
    "AddRepo": ("AddRepoRequest", "AddRepoReply"),
    "RemoveRepo": ("RemoveRepoRequest", "RemoveRepoReply"),
    "RefreshRepos": ("RefreshReposRequest", "Empty"),
    "SetDefaultRepo": ("SetDefaultRepoRequest", "Empty"),
    "SetGlobalDefaultRevision": ("SetGlobalDefaultRevisionRequest", "Empty"),
    "SetRepoDefaultRevision": ("SetRepoDefaultRevisionRequest", "SetRepoDefaultRevisionReply"),
    "Subscribe": ("SubscribeRequest", ".events.Event"),
    "GetIntegratedServices": ("Empty", "ListIntegratedServicesReply"),
    "Teardown": ("TeardownRequest", "TeardownReply"),
    "ModifyEnvironment": ("ModifyEnvironmentRequest", "ModifyEnvironmentReply"),
}


@pytest.fixture(scope="module")
def descriptors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    out = tmp_path_factory.mktemp("descriptor") / "control.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{DEFAULT_PROTOS_DIR}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            "o2control.proto",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    files = descriptor_pb2.FileDescriptorSet.FromString(Path(out).read_bytes())
    return {f.package: f for f in files.file}


#: aliecs's own additions: numbered from EXTENSION_FIRST so they never meet a field of the original.
EXTENSION_FIRST = 1000
EXTENSION_FIELDS: dict[str, dict[str, tuple[int, int]]] = {
    "EnvironmentInfo": {"error": (1000, S), "lastRunNumber": (1001, U32)},
    "ShortTaskInfo": {"error": (1000, S), "excluded": (1001, B)},
    "Ev_TaskEvent": {"error": (1000, S)},
    # ModifyEnvironment: variables, restarts, runs and scaling (the original has only roles).
    "ModifyEnvironmentRequest": {
        "vars": (1000, M),
        "restartChanged": (1001, B),
        "allowRunning": (1002, B),
        "requestUser": (1003, M),
    },
    "EnvironmentOperation": {"count": (1000, I32)},
    "ModifyEnvironmentReply": {"error": (1000, S), "restartNeeded": (1001, S)},
}
EXTENSION_RPCS = {"GetTaskLog": ("GetTaskLogRequest", "GetTaskLogReply")}


def fields(file: descriptor_pb2.FileDescriptorProto, name: str) -> dict[str, tuple[int, int]]:
    """The fields of message `name` that the original has too (below EXTENSION_FIRST)."""
    return {k: v for k, v in all_fields(file, name).items() if v[0] < EXTENSION_FIRST}


def all_fields(file: descriptor_pb2.FileDescriptorProto, name: str) -> dict[str, tuple[int, int]]:
    (message,) = [m for m in file.message_type if m.name == name]
    return {f.name: (f.number, f.type) for f in message.field}


def test_extensions_are_the_listed_ones(descriptors: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    for file in (descriptors["o2control"], descriptors["events"]):
        for message in file.message_type:
            extra = {k: v for k, v in all_fields(file, message.name).items() if v[0] >= EXTENSION_FIRST}
            assert extra == EXTENSION_FIELDS.get(message.name, {}), message.name


def test_packages_and_imports(descriptors: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    assert set(descriptors) == {"o2control", "events", "common"}
    assert list(descriptors["o2control"].public_dependency) == [0]  # events.proto is imported publicly


@pytest.mark.parametrize(
    ("package", "table"),
    [("o2control", O2CONTROL_FIELDS), ("events", EVENTS_FIELDS), ("common", COMMON_FIELDS)],
)
def test_field_numbers_and_types(
    descriptors: dict[str, descriptor_pb2.FileDescriptorProto], package: str, table: dict[str, Any]
) -> None:
    for message, expected in table.items():
        assert fields(descriptors[package], message) == expected, message


def test_enums(descriptors: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    events = {e.name: {v.name: v.number for v in e.value} for e in descriptors["events"].enum_type}
    assert events["OpStatus"] == {
        "NULL": 0,
        "STARTED": 1,
        "ONGOING": 2,
        "DONE_OK": 3,
        "DONE_ERROR": 4,
        "DONE_TIMEOUT": 5,
    }
    nested = {
        (m.name, e.name): {v.name: v.number for v in e.value}
        for m in descriptors["o2control"].message_type
        for e in m.enum_type
    }
    assert nested[("ControlEnvironmentRequest", "Optype")] == {
        "NOOP": 0,
        "START_ACTIVITY": 1,
        "STOP_ACTIVITY": 2,
        "CONFIGURE": 3,
        "RESET": 4,
        "GO_ERROR": 5,
        "DEPLOY": 6,
        "RECOVER": 100,  # aliecs extensions on numbers the original does not use
        "EXIT": 101,
    }
    assert nested[("EnvironmentOperation", "Optype")] == {
        "NOOP": 0,
        "REMOVE_ROLE": 3,
        "ADD_ROLE": 4,
        "SCALE_ROLE": 100,  # aliecs extension
    }
    assert nested[("VarSpecMessage", "Type")] == {"string": 0, "number": 1, "bool": 2, "list": 3, "map": 4}
    assert list(nested[("VarSpecMessage", "UiWidget")]) == [
        "editBox",
        "slider",
        "listBox",
        "dropDownBox",
        "comboBox",
        "radioButtonBox",
        "checkBox",
    ]


def test_service(descriptors: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    (service,) = descriptors["o2control"].service
    assert service.name == "Control"
    rpcs = {
        m.name: (m.input_type.removeprefix(".o2control."), m.output_type.removeprefix(".o2control."))
        for m in service.method
    }
    assert rpcs == {**RPCS, **EXTENSION_RPCS}
    streaming = {m.name for m in service.method if m.server_streaming}
    assert streaming == {"Subscribe"} and not any(m.client_streaming for m in service.method)


def test_event_bytes_decode_with_reference_runtime(
    descriptors: dict[str, descriptor_pb2.FileDescriptorProto],
) -> None:
    pool = descriptor_pool.DescriptorPool()
    for package in ("common", "events", "o2control"):
        pool.Add(descriptors[package])
    Event = message_factory.GetMessageClass(pool.FindMessageTypeByName("events.Event"))
    ours = events_pb.Event(
        timestamp=1_700_000_000_123,
        timestamp_nano=1_700_000_000_123_456_789,
        environment_event=events_pb.EvEnvironmentEvent(
            environment_id="env1",
            state="RUNNING",
            run_number=42,
            transition="START_ACTIVITY",
            transition_status=events_pb.OpStatus.DONE_OK,
            last_request_user=common_pb.User(name="op@host"),
        ),
    )
    theirs = Event.FromString(bytes(ours))
    assert theirs.WhichOneof("Payload") == "environmentEvent"
    assert theirs.environmentEvent.runNumber == 42 and theirs.environmentEvent.transitionStatus == 3
    assert theirs.environmentEvent.lastRequestUser.name == "op@host"
    assert theirs.timestampNano == 1_700_000_000_123_456_789

    reply_name = "o2control.ControlEnvironmentReply"
    Reply = message_factory.GetMessageClass(pool.FindMessageTypeByName(reply_name))
    reply = Reply(id="env1", state="CONFIGURED", currentRunNumber=7, transitionDuration=12)
    decoded = pb.ControlEnvironmentReply().parse(reply.SerializeToString())
    assert (decoded.id, decoded.state, decoded.current_run_number, decoded.transition_duration) == (
        "env1",
        "CONFIGURED",
        7,
        12,
    )


def test_generated_names_do_not_collide() -> None:
    # Both packages define WorkflowTemplateInfo with different fields; each keeps its own.
    assert pb.WorkflowTemplateInfo is not common_pb.WorkflowTemplateInfo
    assert "template" in pb.WorkflowTemplateInfo.__dataclass_fields__
    assert "public" in common_pb.WorkflowTemplateInfo.__dataclass_fields__
    assert pb.NewEnvironmentRequest().request_user.__class__ is common_pb.User
