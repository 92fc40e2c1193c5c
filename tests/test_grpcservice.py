"""Services on the generated grpclib Base classes: routes from the .proto, every RPC implemented.

(What they answer over the wire, bounds and errors included, is tested service by service:
test_occ_library, test_server, test_hardening, test_executor.)
"""

from __future__ import annotations

import inspect

import pytest

from aliecs.executor.service import ExecutorService
from aliecs.generated import aliecs_executor as executor_pb
from aliecs.generated import o2control as control_pb
from aliecs.generated import occ_pb
from aliecs.grpcservice import routes, rpc_name, rpc_routes
from aliecs.occ.service import OccService
from aliecs.occ.task import TaskStateMachine
from aliecs.server.service import ControlService

pytestmark = pytest.mark.timeout(30)


def methods_left_unimplemented(service: type, base: type, served_by_calls: set[str]) -> list[str]:
    """The generated Base's RPC methods that `service` neither overrides nor serves by a call handler:
    each would answer UNIMPLEMENTED without a word."""
    names = {
        name
        for name, value in vars(base).items()
        if inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value)
    }
    names = {name for name in names if not name.startswith("_")}
    return sorted(name for name in names - served_by_calls if getattr(service, name) is getattr(base, name))


def test_every_rpc_of_each_service_is_implemented() -> None:
    assert methods_left_unimplemented(ControlService, control_pb.ControlBase, {"subscribe"}) == []
    occ_calls = {"transition", "event_stream", "state_stream"}
    assert methods_left_unimplemented(OccService, occ_pb.OccBase, occ_calls) == []
    assert methods_left_unimplemented(ExecutorService, executor_pb.ExecutorBase, set()) == []


async def test_routes_keep_what_the_proto_says_and_refuse_an_unknown_call_name() -> None:
    service = OccService(TaskStateMachine())
    generated = occ_pb.OccBase.__mapping__(service)
    mapping = service.__mapping__()
    assert set(mapping) == set(generated) == {"/occ_pb.Occ/" + name for name in rpc_routes(occ_pb.OccBase)}
    for path, handler in mapping.items():
        assert (handler.cardinality, handler.request_type, handler.reply_type) == generated[path][1:]
    with pytest.raises(
        ValueError, match=r"no RPC named Transtion in this service \(it has: EventStream, GetState"
    ):
        routes(generated, calls={"Transtion": service._rpc_transition})
    assert rpc_name("/o2control.Control/GetFrameworkInfo") == "GetFrameworkInfo"
