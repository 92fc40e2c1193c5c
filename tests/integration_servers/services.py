"""The five stand-in services and the harness that runs them (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpclib
from grpclib.const import Status
from grpclib.server import Server

from aliecs.generated import ctpd, dcs, odc
from aliecs.generated.o2 import bookkeeping as bk
from aliecs.generated.o2.DataDistribution import Control as dd
from aliecs.integrations.ddsched_wire import DataDistributionControlBase


@dataclass(frozen=True)
class Call:
    """One request a service received."""

    service: str
    method: str
    request: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.service}.{self.method}"


@dataclass
class Script:
    """How a service answers one method: `delay` seconds late; `refuse` with this message; `drop` the
    connection; for DCS, `detectors` maps detector names to the state they answer (default RUN_OK)."""

    delay: float = 0.0
    refuse: str = ""
    drop: bool = False
    detectors: dict[str, str] = field(default_factory=dict)


class _Behaviour:
    """What every stand-in shares: recording and scripted misbehaviour."""

    service = ""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def enter(self, method: str, request: Any) -> Script:
        """Record the request and apply the script's delay or drop; the script for the rest."""
        self.services.calls.append(Call(self.service, method, request.to_dict()))
        self.services.arrived.set()
        script = self.services.scripts.get((self.service, method), Script())
        if script.delay:
            await asyncio.sleep(script.delay)  # a slow service, not a synchronisation
        if script.drop:
            await self.services.drop(self.service)
            await asyncio.Event().wait()  # never answers: the connection is gone
        return script


class FakeDcs(dcs.ConfiguratorBase, _Behaviour):
    service = "dcs"

    def __init__(self, services: Services) -> None:
        _Behaviour.__init__(self, services)
        self.matrix: dict[str, tuple[str, str]] = {}  # detector -> (pfr, sor availability)
        self.changed = asyncio.Event()

    def set_availability(self, detector: str, pfr: str = "PFR_AVAILABLE", sor: str = "SOR_AVAILABLE") -> None:
        self.matrix[detector] = (pfr, sor)
        self.changed.set()

    def _matrix(self) -> list[dcs.DetectorInfo]:
        return [
            dcs.DetectorInfo(
                detector=dcs.Detector.from_string(name),
                state=dcs.DetectorState.READY,
                pfr_availability=dcs.DetectorState.from_string(pfr),
                sor_availability=dcs.DetectorState.from_string(sor),
            )
            for name, (pfr, sor) in self.matrix.items()
        ]

    async def subscribe(self, subscription_request: dcs.SubscriptionRequest) -> AsyncIterator[dcs.Event]:
        while True:
            self.changed.clear()
            yield dcs.Event(eventtype=dcs.EventType.HEARTBEAT, detector_matrix=self._matrix())
            await self.changed.wait()

    async def _operation(
        self, method: str, request: Any, event: dcs.EventType
    ) -> AsyncIterator[dcs.RunEvent]:
        script = await self.enter(method, request)
        if script.refuse:
            raise grpclib.GRPCError(Status.FAILED_PRECONDITION, script.refuse)
        for operation in request.detectors:
            name = dcs.Detector(operation.detector).name
            state = script.detectors.get(name, "RUN_OK")
            message = f"{name} says no" if state != "RUN_OK" else ""
            yield dcs.RunEvent(
                eventtype=event,
                detector=operation.detector,
                state=dcs.DetectorState.from_string(state),
                message=message,
            )

    async def prepare_for_run(self, pfr_request: dcs.PfrRequest) -> AsyncIterator[dcs.RunEvent]:
        async for answer in self._operation("PrepareForRun", pfr_request, dcs.EventType.PFR_EVENT):
            yield answer

    async def start_of_run(self, sor_request: dcs.SorRequest) -> AsyncIterator[dcs.RunEvent]:
        async for answer in self._operation("StartOfRun", sor_request, dcs.EventType.SOR_EVENT):
            yield answer

    async def end_of_run(self, eor_request: dcs.EorRequest) -> AsyncIterator[dcs.RunEvent]:
        async for answer in self._operation("EndOfRun", eor_request, dcs.EventType.EOR_EVENT):
            yield answer

    async def get_status(self, status_request: dcs.StatusRequest) -> dcs.StatusReply:
        return dcs.StatusReply(detector_matrix=self._matrix())


class FakeTrg(ctpd.CtPdBase, _Behaviour):
    service = "trg"

    async def _reply(self, method: str, request: Any) -> ctpd.RunReply:
        script = await self.enter(method, request)
        return ctpd.RunReply(rc=1, msg=script.refuse) if script.refuse else ctpd.RunReply(rc=0, msg="ok")

    async def prepare_for_run(self, run_prepare_request: ctpd.RunPrepareRequest) -> ctpd.RunReply:
        return await self._reply("PrepareForRun", run_prepare_request)

    async def run_load(self, run_load_request: ctpd.RunLoadRequest) -> ctpd.RunReply:
        return await self._reply("RunLoad", run_load_request)

    async def run_start(self, run_start_request: ctpd.RunStartRequest) -> ctpd.RunReply:
        return await self._reply("RunStart", run_start_request)

    async def run_stop(self, run_stop_request: ctpd.RunStopRequest) -> ctpd.RunReply:
        return await self._reply("RunStop", run_stop_request)

    async def run_unload(self, run_stop_request: ctpd.RunStopRequest) -> ctpd.RunReply:
        return await self._reply("RunUnload", run_stop_request)


class FakeOdc(odc.OdcBase, _Behaviour):
    service = "odc"

    async def _general(self, method: str, request: Any, state: str) -> odc.GeneralReply:
        script = await self.enter(method, request)
        if script.refuse:
            return odc.GeneralReply(
                msg="refused", status=odc.ReplyStatus.ERROR, error=odc.Error(msg=script.refuse, code=42)
            )
        return odc.GeneralReply(msg="done", status=odc.ReplyStatus.SUCCESS, state=state)

    async def _state(self, method: str, request: Any, state: str) -> odc.StateReply:
        return odc.StateReply(reply=await self._general(method, request, state))

    async def run(self, run_request: odc.RunRequest) -> odc.GeneralReply:
        return await self._general("Run", run_request, "IDLE")

    async def initialize(self, initialize_request: odc.InitializeRequest) -> odc.GeneralReply:
        return await self._general("Initialize", initialize_request, "")

    async def submit(self, submit_request: odc.SubmitRequest) -> odc.GeneralReply:
        return await self._general("Submit", submit_request, "")

    async def activate(self, activate_request: odc.ActivateRequest) -> odc.GeneralReply:
        return await self._general("Activate", activate_request, "IDLE")

    async def set_properties(self, set_properties_request: odc.SetPropertiesRequest) -> odc.GeneralReply:
        return await self._general("SetProperties", set_properties_request, "")

    async def configure(self, configure_request: odc.ConfigureRequest) -> odc.StateReply:
        return await self._state("Configure", configure_request, "READY")

    async def start(self, start_request: odc.StartRequest) -> odc.StateReply:
        return await self._state("Start", start_request, "RUNNING")

    async def stop(self, stop_request: odc.StopRequest) -> odc.StateReply:
        return await self._state("Stop", stop_request, "READY")

    async def reset(self, reset_request: odc.ResetRequest) -> odc.StateReply:
        return await self._state("Reset", reset_request, "IDLE")

    async def terminate(self, terminate_request: odc.TerminateRequest) -> odc.StateReply:
        return await self._state("Terminate", terminate_request, "IDLE")

    async def shutdown(self, shutdown_request: odc.ShutdownRequest) -> odc.GeneralReply:
        return await self._general("Shutdown", shutdown_request, "")

    async def status(self, status_request: odc.StatusRequest) -> odc.StatusReply:
        return odc.StatusReply(status=odc.ReplyStatus.SUCCESS)


class FakeDdSched(DataDistributionControlBase, _Behaviour):
    """Answers CONFIGURING/TERMINATING, then the final state at the first status poll."""

    service = "ddsched"

    def __init__(self, services: Services) -> None:
        _Behaviour.__init__(self, services)
        self.partitions: dict[str, int] = {}

    async def partition_initialize(self, request: dd.PartitionInitRequest) -> dd.PartitionResponse:
        script = await self.enter("PartitionInitialize", request)
        if script.refuse:
            return dd.PartitionResponse(
                partition_state=dd.PartitionState.PARTITION_ERROR, info_message=script.refuse
            )
        self.partitions[request.partition_info.partition_id] = dd.PartitionState.PARTITION_CONFIGURED
        return dd.PartitionResponse(partition_state=dd.PartitionState.PARTITION_CONFIGURING)

    async def partition_terminate(self, request: dd.PartitionTermRequest) -> dd.PartitionResponse:
        script = await self.enter("PartitionTerminate", request)
        if script.refuse:
            return dd.PartitionResponse(
                partition_state=dd.PartitionState.PARTITION_ERROR, info_message=script.refuse
            )
        self.partitions[request.partition_info.partition_id] = dd.PartitionState.PARTITION_TERMINATED
        return dd.PartitionResponse(partition_state=dd.PartitionState.PARTITION_TERMINATING)

    async def partition_status(self, request: dd.PartitionInfo) -> dd.PartitionResponse:
        state = self.partitions.get(request.partition_id, dd.PartitionState.PARTITION_UNKNOWN)
        return dd.PartitionResponse(partition_state=state)


class _BookkeepingService(_Behaviour):
    service = "bookkeeping"

    async def answer(self, method: str, request: Any, reply: Any) -> Any:
        script = await self.enter(method, request)
        if script.refuse:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, script.refuse)
        return reply


class FakeRuns(bk.RunServiceBase, _BookkeepingService):
    async def create(self, run_creation_request: bk.RunCreationRequest) -> bk.Run:
        return await self.answer(
            "RunService.Create", run_creation_request, bk.Run(run_number=run_creation_request.run_number)
        )

    async def update(self, run_update_request: bk.RunUpdateRequest) -> bk.Run:
        return await self.answer(
            "RunService.Update", run_update_request, bk.Run(run_number=run_update_request.run_number)
        )

    async def get(self, run_fetch_request: bk.RunFetchRequest) -> bk.RunWithRelations:
        return bk.RunWithRelations(run=bk.Run(run_number=run_fetch_request.run_number))


class FakeEnvironments(bk.EnvironmentServiceBase, _BookkeepingService):
    async def create(self, environment_creation_request: bk.EnvironmentCreationRequest) -> bk.Environment:
        request = environment_creation_request
        return await self.answer("EnvironmentService.Create", request, bk.Environment(id=request.id))

    async def update(self, environment_update_request: bk.EnvironmentUpdateRequest) -> bk.Environment:
        request = environment_update_request
        return await self.answer("EnvironmentService.Update", request, bk.Environment(id=request.id))


class FakeFlps(bk.FlpServiceBase, _BookkeepingService):
    async def create_many(self, many_flps_creation_request: bk.ManyFlpsCreationRequest) -> bk.FlpList:
        return await self.answer("FlpService.CreateMany", many_flps_creation_request, bk.FlpList())

    async def update_counters(self, update_counters_request: bk.UpdateCountersRequest) -> bk.Flp:
        return await self.answer("FlpService.UpdateCounters", update_counters_request, bk.Flp())


class FakeLogs(bk.LogServiceBase, _BookkeepingService):
    async def create(self, log_creation_request: bk.LogCreationRequest) -> bk.Log:
        return await self.answer(
            "LogService.Create", log_creation_request, bk.Log(title=log_creation_request.title)
        )


class FakeFills(bk.LhcFillServiceBase, _BookkeepingService):
    async def get_last(
        self, last_lhc_fill_fetch_request: bk.LastLhcFillFetchRequest
    ) -> bk.LhcFillWithRelations:
        fill = bk.LhcFill(fill_number=8123, beam_type="PROTON - PROTON", filling_scheme_name="25ns_2352b")
        return await self.answer(
            "LhcFillService.GetLast", last_lhc_fill_fetch_request, bk.LhcFillWithRelations(lhc_fill=fill)
        )


class _Proxy:
    """A TCP relay in front of one service, so that the service can drop its connections for real:
    `cut` closes the listener and aborts every relayed connection (the client sees a reset)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.pipes: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket) -> None:
        self.server = await asyncio.start_server(self._relay, sock=sock)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self.pipes.add(task)
            task.add_done_callback(self.pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.close()

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)


class Services:
    """All five services, each on its own loopback port. `async with Services() as services:`."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.arrived = asyncio.Event()
        self.scripts: dict[tuple[str, str], Script] = {}
        self.dcs = FakeDcs(self)
        for detector in ("TPC", "ITS", "TOF"):
            self.dcs.set_availability(detector)
        self.handlers: dict[str, list[Any]] = {
            "dcs": [self.dcs],
            "trg": [FakeTrg(self)],
            "odc": [FakeOdc(self)],
            "ddsched": [FakeDdSched(self)],
            "bookkeeping": [
                FakeRuns(self),
                FakeEnvironments(self),
                FakeFlps(self),
                FakeLogs(self),
                FakeFills(self),
            ],
        }
        self.servers: dict[str, Server] = {}
        self.proxies: dict[str, _Proxy] = {}
        self.ports: dict[str, int] = {}

    @property
    def endpoints(self) -> dict[str, str]:
        return {name: f"127.0.0.1:{port}" for name, port in self.ports.items()}

    async def start(self) -> None:
        """Each service listens on a free loopback port behind its relay, whose port is the endpoint."""
        for name, handlers in self.handlers.items():
            server = Server(handlers)
            inner = _bound()
            await server.start(sock=inner)
            self.servers[name] = server
            outer = _bound()
            self.ports[name] = outer.getsockname()[1]
            self.proxies[name] = _Proxy(inner.getsockname()[1])
            await self.proxies[name].start(outer)

    async def close(self) -> None:
        for name in list(self.proxies):
            await self.drop(name)
        for server in self.servers.values():
            server.close()
        for server in self.servers.values():
            await server.wait_closed()
        self.servers.clear()

    async def drop(self, name: str) -> None:
        """The service goes away: its connections are reset and nothing listens on its port any more."""
        proxy = self.proxies.pop(name, None)
        if proxy is not None:
            await proxy.cut()

    async def __aenter__(self) -> Services:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def script(self, service: str, method: str, **how: Any) -> None:
        self.scripts[(service, method)] = Script(**how)

    def names(self, service: str | None = None) -> list[str]:
        """The calls received so far, as `service.method`, in order."""
        return [call.name for call in self.calls if service is None or call.service == service]

    def requests(self, service: str, method: str) -> list[dict[str, Any]]:
        return [call.request for call in self.calls if call.service == service and call.method == method]


def _bound() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock
