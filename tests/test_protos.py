"""The committed generated code matches protos/, and occ.proto speaks the original AliECS wire format.

Wire compatibility is checked two ways: the .proto is compiled by protoc (grpc_tools) into a
descriptor set whose names, numbers and types are compared with the original protocol's (interface
facts written out by hand below), and bytes encoded by our betterproto classes are decoded by the
reference protobuf runtime and by hand.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from aliecs.generated import occ_pb
from aliecs.protos_build import DEFAULT_OUT_DIR, DEFAULT_PROTOS_DIR

# Generating every package (with the integration services' protos) takes ~10 s of CPU per build,
# several times that on a loaded machine; one test builds three times.
pytestmark = pytest.mark.timeout(300)

FDP = descriptor_pb2.FieldDescriptorProto

# The original occ_pb protocol: message -> [(field name, number, type, type name or "")].
ORIGINAL_MESSAGES: dict[str, list[tuple[str, int, int, str]]] = {
    "EventStreamRequest": [],
    "DeviceEvent": [("type", 1, FDP.TYPE_ENUM, ".occ_pb.DeviceEventType")],
    "EventStreamReply": [("event", 1, FDP.TYPE_MESSAGE, ".occ_pb.DeviceEvent")],
    "StateStreamRequest": [],
    "StateStreamReply": [
        ("type", 1, FDP.TYPE_ENUM, ".occ_pb.StateType"),
        ("state", 2, FDP.TYPE_STRING, ""),
    ],
    "GetStateRequest": [],
    "GetStateReply": [("state", 1, FDP.TYPE_STRING, ""), ("pid", 2, FDP.TYPE_INT32, "")],
    "ConfigEntry": [("key", 1, FDP.TYPE_STRING, ""), ("value", 2, FDP.TYPE_STRING, "")],
    "TransitionRequest": [
        ("srcState", 1, FDP.TYPE_STRING, ""),
        ("transitionEvent", 2, FDP.TYPE_STRING, ""),
        ("arguments", 3, FDP.TYPE_MESSAGE, ".occ_pb.ConfigEntry"),
    ],
    "TransitionReply": [
        ("trigger", 1, FDP.TYPE_ENUM, ".occ_pb.StateChangeTrigger"),
        ("state", 2, FDP.TYPE_STRING, ""),
        ("transitionEvent", 3, FDP.TYPE_STRING, ""),
        ("ok", 4, FDP.TYPE_BOOL, ""),
    ],
}
ORIGINAL_ENUMS: dict[str, dict[str, int]] = {
    "StateChangeTrigger": {"EXECUTOR": 0, "DEVICE_INTENTIONAL": 1, "DEVICE_ERROR": 2},
    "StateType": {"STATE_STABLE": 0, "STATE_INTERMEDIATE": 1},
    "DeviceEventType": {
        "NULL_DEVICE_EVENT": 0,
        "END_OF_STREAM": 1,
        "BASIC_TASK_TERMINATED": 2,
        "TASK_INTERNAL_ERROR": 3,
    },
}
ORIGINAL_RPCS: dict[str, tuple[str, str, bool]] = {
    "EventStream": (".occ_pb.EventStreamRequest", ".occ_pb.EventStreamReply", True),
    "StateStream": (".occ_pb.StateStreamRequest", ".occ_pb.StateStreamReply", True),
    "GetState": (".occ_pb.GetStateRequest", ".occ_pb.GetStateReply", False),
    "Transition": (".occ_pb.TransitionRequest", ".occ_pb.TransitionReply", False),
}


def _build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aliecs.protos_build", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="module")
def occ_descriptor(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path_factory.mktemp("descriptor") / "occ.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{DEFAULT_PROTOS_DIR}",
            f"--descriptor_set_out={out}",
            "occ.proto",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (occ,) = files.file
    return occ


@pytest.fixture(scope="module")
def reference_classes(occ_descriptor: descriptor_pb2.FileDescriptorProto) -> dict[str, Any]:
    """Message classes of the reference protobuf runtime, built from protoc's view of occ.proto."""
    pool = descriptor_pool.DescriptorPool()
    file_desc = pool.Add(occ_descriptor)
    return {
        name: message_factory.GetMessageClass(desc) for name, desc in file_desc.message_types_by_name.items()
    }


# -- generated code is up to date -----------------------------------------------------------------


def test_generated_code_is_up_to_date() -> None:
    result = _build("--check")
    assert result.returncode == 0, f"run `make protos` and commit the result:\n{result.stderr}"


def test_check_mode_reports_stale_and_new_files(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(DEFAULT_PROTOS_DIR, protos)
    generated = tmp_path / "generated"
    shutil.copytree(DEFAULT_OUT_DIR, generated, ignore=shutil.ignore_patterns("__pycache__"))
    (generated / "occ_pb" / "__init__.py").write_text("# edited by hand\n")
    (protos / "extra.proto").write_text(
        'syntax = "proto3";\npackage extra_pb;\nmessage Ping { int32 n = 1; }\n'
    )

    result = _build("--check", "--protos-dir", str(protos), "--out-dir", str(generated))
    assert result.returncode == 1
    assert "differs: occ_pb/__init__.py" in result.stderr
    assert "missing: extra_pb/__init__.py" in result.stderr  # new .proto files are picked up by themselves
    assert (generated / "occ_pb" / "__init__.py").read_text() == "# edited by hand\n"  # check never writes

    assert _build("--protos-dir", str(protos), "--out-dir", str(generated)).returncode == 0
    assert _build("--check", "--protos-dir", str(protos), "--out-dir", str(generated)).returncode == 0
    assert (generated / "occ_pb" / "__init__.py").read_bytes() == (
        DEFAULT_OUT_DIR / "occ_pb" / "__init__.py"
    ).read_bytes()


# -- wire compatibility ---------------------------------------------------------------------------


def test_descriptor_matches_the_original_protocol(occ_descriptor: descriptor_pb2.FileDescriptorProto) -> None:
    assert occ_descriptor.package == "occ_pb"
    messages = {
        msg.name: [(f.name, f.number, f.type, f.type_name) for f in msg.field]
        for msg in occ_descriptor.message_type
    }
    assert messages == ORIGINAL_MESSAGES
    repeated = {
        (m.name, f.name)
        for m in occ_descriptor.message_type
        for f in m.field
        if f.label == FDP.LABEL_REPEATED
    }
    assert repeated == {("TransitionRequest", "arguments")}
    enums = {e.name: {v.name: v.number for v in e.value} for e in occ_descriptor.enum_type}
    assert enums == ORIGINAL_ENUMS
    (service,) = occ_descriptor.service
    assert service.name == "Occ"
    rpcs = {m.name: (m.input_type, m.output_type, m.server_streaming) for m in service.method}
    assert rpcs == ORIGINAL_RPCS
    assert not any(m.client_streaming for m in service.method)


def test_betterproto_bytes_decode_with_reference_runtime(reference_classes: dict[str, Any]) -> None:
    ours = occ_pb.TransitionRequest(
        src_state="STANDBY",
        transition_event="CONFIGURE",
        arguments=[occ_pb.ConfigEntry(key="chans.data.0.address", value="tcp://*:5555")],
    )
    theirs = reference_classes["TransitionRequest"].FromString(bytes(ours))
    assert theirs.srcState == "STANDBY" and theirs.transitionEvent == "CONFIGURE"
    assert [(e.key, e.value) for e in theirs.arguments] == [("chans.data.0.address", "tcp://*:5555")]

    reply = reference_classes["TransitionReply"](trigger=2, state="ERROR", transitionEvent="START", ok=False)
    decoded = occ_pb.TransitionReply().parse(reply.SerializeToString())
    assert decoded.trigger == occ_pb.StateChangeTrigger.DEVICE_ERROR
    assert (decoded.state, decoded.transition_event, decoded.ok) == ("ERROR", "START", False)

    event = reference_classes["EventStreamReply"]()
    event.event.type = 3
    assert occ_pb.EventStreamReply().parse(event.SerializeToString()).event.type.name == "TASK_INTERNAL_ERROR"

    state = occ_pb.GetStateReply(state="RUNNING", pid=4242)
    assert reference_classes["GetStateReply"].FromString(bytes(state)).pid == 4242


def test_encoding_by_hand() -> None:
    # field 1 varint (tag 0x08) = 3; field 2 length-delimited (tag 0x12) "ERROR"; field 4 varint (0x20) true.
    reply = occ_pb.TransitionReply(trigger=occ_pb.StateChangeTrigger(2), state="ERROR", ok=True)
    assert bytes(reply) == b"\x08\x02\x12\x05ERROR\x20\x01"
    # EventStreamReply.event (field 1, message) wrapping DeviceEvent.type (field 1, enum) = END_OF_STREAM.
    event = occ_pb.EventStreamReply(event=occ_pb.DeviceEvent(type=occ_pb.DeviceEventType(1)))
    assert bytes(event) == b"\x0a\x02\x08\x01"
    # TransitionRequest: srcState=1, transitionEvent=2, arguments=3 (ConfigEntry key=1, value=2).
    request = occ_pb.TransitionRequest(
        src_state="A", transition_event="B", arguments=[occ_pb.ConfigEntry(key="k", value="v")]
    )
    assert bytes(request) == b"\x0a\x01A\x12\x01B\x1a\x06\x0a\x01k\x12\x01v"
    assert bytes(occ_pb.GetStateReply(state="S", pid=7)) == b"\x0a\x01S\x10\x07"
