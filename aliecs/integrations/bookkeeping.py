"""`bookkeeping`: the run and environment records of ALICE's Bookkeeping, through its gRPC services
(`o2.bookkeeping.RunService`, `EnvironmentService`, `FlpService`, `LogService`, `LhcFillService`), as
the original's plugin.

- CreateEnv / UpdateEnv: the environment and the state it is in after the trigger point
  (`after_CONFIGURE` -> CONFIGURED...), with a status message.
- StartOfRun: RunService.Create (run number, environment, `detectors`, FLPs from `hosts` plus
  `ctp_readout_host` when `ctp_readout_enabled`, `odc_n_epns`, `dd_enabled`, `dcs_enabled`,
  `epn_enabled`, `odc_topology`, `odc_topology_fullname`, `run_type`), then a log entry for the run
  with the environment's variables (LogService.Create), then the FLPs (FlpService.CreateMany). As in
  the original, a refused run creation still files the log entry (without run) and fails the call
  only if that fails too.
- UpdateRunStart / UpdateRunStop: RunService.Update with the O2 and trigger start/end times
  (`run_start_time_ms`, `run_end_time_ms`, `trg_start_time_ms`, `trg_end_time_ms`), the trigger mode
  (OFF, LTU or CTP from `trg_enabled`/`trg_global_run_enabled`) and the PDP/readout settings.
- RetrieveFillInfo: the last LHC fill, written to the `fill_info_*` variables.
Every request times out after the call's timeout (30 s by default).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aliecs.events import DONE_ERROR, DONE_OK, ONGOING, STARTED
from aliecs.generated.o2 import bookkeeping as pb
from aliecs.integrations.base import CallContext, IntegrationError
from aliecs.integrations.grpcbase import GrpcPlugin
from aliecs.integrations.vars import detector_list, run_number

BKP_TIMEOUT = 30.0
MAX_LOG_TEXT = 64 * 1024

# The environment's state once a trigger point is reached (UpdateEnv reports it).
_STATE_AFTER = {
    "DEPLOY": "DEPLOYED",
    "CONFIGURE": "CONFIGURED",
    "RESET": "DEPLOYED",
    "START_ACTIVITY": "RUNNING",
    "STOP_ACTIVITY": "CONFIGURED",
    "EXIT": "DONE",
    "GO_ERROR": "ERROR",
    "RECOVER": "DEPLOYED",
}
_STATE_BEFORE = {"DEPLOY": "STANDBY", "CONFIGURE": "DEPLOYED", "START_ACTIVITY": "CONFIGURED"}


def state_at(trigger: str) -> str:
    """`after_CONFIGURE+100` -> CONFIGURED, `enter_RUNNING` -> RUNNING, `DESTROY` -> DESTROYED."""
    point = trigger.split("+")[0].split("-")[0].strip()
    kind, _, what = point.partition("_")
    if kind == "after":
        return _STATE_AFTER.get(what, what)
    if kind == "before":
        return _STATE_BEFORE.get(what, "")
    if kind in ("enter", "leave"):
        return what
    return "DESTROYED" if point.startswith("DESTROY") else ""


def _int(text: str) -> int | None:
    return int(text) if text.strip().lstrip("-").isdigit() else None


class BookkeepingPlugin(GrpcPlugin):
    name = "bookkeeping"
    pretty_name = "Bookkeeping"
    endpoint_setting = "bookkeepingBaseUri"
    default_timeout = BKP_TIMEOUT

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.runs: dict[str, int] = {}  # environment id -> run created and not yet closed

    def environment_data(self, environment_id: str) -> dict[str, Any] | None:
        run = self.runs.get(environment_id)
        return {"pendingRunStop": run} if run is not None else None

    async def _send(
        self, call: CallContext, operation: str, service: str, answer: Callable[[float], Awaitable[Any]]
    ) -> Any:
        what = f"Bookkeeping {operation} call failed"
        step = f"perform Bookkeeping call: {service}"
        timeout = call.deadline(self.default_timeout)
        self.report(call, ONGOING, step, STARTED)
        try:
            reply = await self.request(what, answer(timeout), timeout)
        except IntegrationError as exc:
            self.report(call, ONGOING, step, DONE_ERROR, str(exc))
            raise
        self.report(call, ONGOING, step, DONE_OK)
        return reply

    def functions(self, call: CallContext) -> Mapping[str, Callable[..., Any]]:
        env_id = call.environment_id

        def channel() -> Any:
            return self._channel(f"bookkeeping.{call.func}")

        def flps() -> list[str]:
            hosts = detector_list(call, "hosts") if call.has("hosts") else []
            if call.flag("ctp_readout_enabled") and call.var("ctp_readout_host"):
                hosts.append(call.var("ctp_readout_host"))
            return hosts

        async def create_env() -> str:
            state = state_at(call.trigger) or "STANDBY"
            ok = state in ("STANDBY", "DEPLOYED")
            message = f"{'success' if ok else 'error'}: the environment is in {state} state after creation"
            request = pb.EnvironmentCreationRequest(id=env_id, status=state, status_message=message)
            stub = pb.EnvironmentServiceStub(channel())
            await self._send(
                call, "CreateEnv", "EnvironmentService.Create", lambda t: stub.create(request, timeout=t)
            )
            return ""

        async def update_env() -> str:
            state = state_at(call.trigger)
            request = pb.EnvironmentUpdateRequest(
                id=env_id, status=state, status_message=f"the environment is in {state} state"
            )
            stub = pb.EnvironmentServiceStub(channel())
            await self._send(
                call, "UpdateEnv", "EnvironmentService.Update", lambda t: stub.update(request, timeout=t)
            )
            return ""

        async def start_of_run() -> str:
            number = run_number(call)
            detectors = detector_list(call, "detectors") if call.has("detectors") else []
            hosts = flps()
            run_type = call.var("run_type").strip().upper()
            request = pb.RunCreationRequest(
                environment_id=env_id,
                n_detectors=len(detectors),
                n_epns=_int(call.var("odc_n_epns")) or 0,
                n_flps=len(hosts),
                run_number=number,
                run_type=pb.RunType(_enum(pb.RunType, run_type)),
                dd_flp=call.flag("dd_enabled"),
                dcs=call.flag("dcs_enabled"),
                epn=call.flag("epn_enabled"),
                epn_topology=call.var("odc_topology"),
                odc_topology_full_name=call.var("odc_topology_fullname"),
                detectors=[pb.Detector(_enum(pb.Detector, name.upper())) for name in detectors],
            )
            text = json.dumps(dict(sorted(call.vars.items())), indent=1)[:MAX_LOG_TEXT]
            runs = pb.RunServiceStub(channel())
            logs = pb.LogServiceStub(channel())
            title = f"Log for run {number} and environment {env_id}"
            try:
                await self._send(
                    call, "StartOfRun", "RunService.Create", lambda t: runs.create(request, timeout=t)
                )
            except IntegrationError as refused:
                entry = pb.LogCreationRequest(title=title, text=text, run_numbers=[])
                try:
                    await self._send(
                        call, "StartOfRun", "LogService.Create", lambda t: logs.create(entry, timeout=t)
                    )
                except IntegrationError as exc:
                    raise IntegrationError(f"{refused}; {exc}") from exc
                return ""
            self.runs[env_id] = number
            entry = pb.LogCreationRequest(title=title, text=text, run_numbers=[number])
            await self._send(call, "StartOfRun", "LogService.Create", lambda t: logs.create(entry, timeout=t))
            many = pb.ManyFlpsCreationRequest(
                flps=[pb.FlpCreationRequest(name=host, hostname=host, run_number=number) for host in hosts]
            )
            flp_stub = pb.FlpServiceStub(channel())
            await self._send(
                call, "StartOfRun", "FlpService.CreateMany", lambda t: flp_stub.create_many(many, timeout=t)
            )
            return ""

        def trigger_mode() -> str:
            if not call.flag("trg_enabled"):
                return "OFF"
            return "CTP" if call.flag("trg_global_run_enabled") else "LTU"

        async def update_run(operation: str, end: bool) -> str:
            number = run_number(call, end_of_run=end)
            request = pb.RunUpdateRequest(
                run_number=number,
                time_o2_start=_int(call.var("run_start_time_ms")),
                time_trg_start=_int(call.var("trg_start_time_ms")),
                trigger_value=trigger_mode(),
                pdp_config_option=call.var("pdp_config_option") or None,
                pdp_topology_description_library_file=call.var("pdp_topology_description_library_file")
                or None,
                pdp_workflow_parameters=call.var("pdp_workflow_parameters") or None,
                pdp_beam_type=call.var("pdp_beam_type") or None,
                tfb_dd_mode=call.var("tfb_dd_mode") or None,
                lhc_period=call.var("lhc_period") or None,
                odc_topology_full_name=call.var("odc_topology_fullname") or None,
                readout_cfg_uri=call.var("readout_cfg_uri") or None,
            )
            if end:
                request.time_o2_end = _int(call.var("run_end_time_ms"))
                request.time_trg_end = _int(call.var("trg_end_time_ms"))
            stub = pb.RunServiceStub(channel())
            await self._send(call, operation, "RunService.Update", lambda t: stub.update(request, timeout=t))
            if end:
                self.runs.pop(env_id, None)
            return ""

        async def update_run_start() -> str:
            return await update_run("UpdateRunStart", end=False)

        async def update_run_stop() -> str:
            if not call.var("run_number") and env_id not in self.runs:
                return ""  # no run to close (teardown or error outside a run)
            return await update_run("UpdateRunStop", end=True)

        async def retrieve_fill_info() -> str:
            stub = pb.LhcFillServiceStub(channel())
            reply: pb.LhcFillWithRelations = await self._send(
                call,
                "RetrieveFillInfo",
                "LhcFillService.GetLast",
                lambda t: stub.get_last(pb.LastLhcFillFetchRequest(), timeout=t),
            )
            fill = reply.lhc_fill
            if fill is not None and fill.fill_number:
                call.set_var("fill_info_fill_number", str(fill.fill_number))
                call.set_var("fill_info_filling_scheme", fill.filling_scheme_name)
                call.set_var("fill_info_beam_type", fill.beam_type)
                if fill.stable_beams_start:
                    call.set_var("fill_info_stable_beams_start_ms", str(fill.stable_beams_start))
                if fill.stable_beams_end:
                    call.set_var("fill_info_stable_beams_end_ms", str(fill.stable_beams_end))
            return ""

        return self.operations(
            call,
            {
                "CreateEnv": create_env,
                "UpdateEnv": update_env,
                "StartOfRun": start_of_run,
                "UpdateRunStart": update_run_start,
                "UpdateRunStop": update_run_stop,
                "RetrieveFillInfo": retrieve_fill_info,
            },
        )


def _enum(kind: Any, name: str) -> int:
    """The number of `name` in a generated enum, 0 (its NULL) when unknown. betterproto drops the
    enum's prefix from the names: RUN_TYPE_PHYSICS is RunType.PHYSICS, DETECTOR_TPC Detector.TPC."""
    try:
        return int(kind.from_string(name))
    except ValueError:
        return 0
