"""`odc`: the EPN farm through FairRootGroup's Online Device Control (service `odc.ODC`), as the
original's plugin.

The partition is the environment id. Each request carries `timeout`: the seconds left of the call
minus `odc_padding_timeout` (3 s by default), so ODC answers before the call gives up. A reply fails
the call when it carries an error ("code N from ODC: <msg>") or its status is not SUCCESS.

- PartitionInitialize -> Run: `pdp_config_option` "Repository hash"/"Repository path" sends
  `odc_script`, "Manual XML" sends `odc_topology`; `odc_plugin` and `odc_resources` unless
  `odc_extract_topology_resources` is true. Default timeout 60 s.
- Configure -> SetProperties (environment_id, run_type, lhc_period, force_run_as_raw, pdp_beam_type,
  detectors sorted and comma separated, orbit-reset-time from pdp_override_run_start_time) then
  Configure. 60 s.
- Start -> SetProperties (runNumber, cleanup and the run's parameters) then Start with the run number. 15 s.
- Stop -> SetProperties (end-of-run parameters; a failure is only logged) then Stop. 15 s.
- Reset -> Reset. 30 s.  PartitionTerminate -> Terminate then Shutdown, skipped when PartitionInitialize
  was never called. 30 s.  EnsureCleanup (teardown) terminates a partition left initialized.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aliecs.events import DONE_ERROR, DONE_OK, ONGOING, STARTED
from aliecs.generated import odc as pb
from aliecs.integrations.base import CallContext, IntegrationError
from aliecs.integrations.grpcbase import GrpcPlugin, clip
from aliecs.integrations.vars import detector_list

log = logging.getLogger(__name__)

PADDING_TIMEOUT = 3.0
TIMEOUTS = {
    "PartitionInitialize": 60.0,
    "Configure": 60.0,
    "Start": 15.0,
    "Stop": 15.0,
    "Reset": 30.0,
    "PartitionTerminate": 30.0,
    "EnsureCleanup": 30.0,
}
# The run's variables passed to the farm at START and STOP (the original's Start/StopActivityParameterKeys).
START_KEYS = (
    "fill_info_fill_number",
    "fill_info_filling_scheme",
    "fill_info_beam_type",
    "fill_info_stable_beams_start_ms",
    "fill_info_stable_beams_end_ms",
    "run_number",
    "run_type",
    "run_start_time_ms",
    "run_end_time_ms",
    "lhc_period",
    "pdp_beam_type",
    "pdp_override_run_start_time",
    "original_run_number",
)
STOP_KEYS = (
    "fill_info_fill_number",
    "fill_info_filling_scheme",
    "fill_info_beam_type",
    "fill_info_stable_beams_start_ms",
    "fill_info_stable_beams_end_ms",
    "run_end_time_ms",
)
INITIALIZED = "__odc_partitioninitialize_called"


class OdcPlugin(GrpcPlugin):
    name = "odc"
    pretty_name = "ODC"
    endpoint_setting = "odcEndpoint"
    default_timeout = 60.0

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.partitions: dict[str, dict[str, Any]] = {}  # environment id -> {"state":, "runNumber":}

    def environment_data(self, environment_id: str) -> dict[str, Any] | None:
        return self.partitions.get(environment_id)

    def functions(self, call: CallContext) -> Mapping[str, Callable[..., Any]]:
        env_id = call.environment_id
        operation = call.func.split("(")[0].rpartition(".")[2]  # odc.Configure() -> Configure
        padding = call.duration("odc_padding_timeout", PADDING_TIMEOUT)

        def odc_timeout() -> int:
            """Seconds ODC has: what is left of the call minus the padding."""
            return max(0, int(call.deadline(TIMEOUTS.get(operation, self.default_timeout)) - padding))

        def state_request(run: int = 0) -> pb.StateRequest:
            return pb.StateRequest(partitionid=env_id, runnr=run, timeout=odc_timeout())

        async def send(step: str, answer: Callable[[pb.OdcStub, float], Awaitable[Any]]) -> Any:
            what = f"EPN {operation} call failed"
            timeout = call.deadline(TIMEOUTS.get(operation, self.default_timeout))
            self.report(call, ONGOING, f"perform ODC call: {step}", STARTED)
            try:
                stub = pb.OdcStub(self._channel(what))
                reply = await self.request(what, answer(stub, timeout), timeout)
                general = reply.reply if isinstance(reply, pb.StateReply) else reply
                if general.error is not None and (general.error.code or general.error.msg):
                    raise IntegrationError(
                        f"{what}: code {general.error.code} from ODC: {clip(general.error.msg)}"
                    )
                if general.status != pb.ReplyStatus.SUCCESS:
                    raise IntegrationError(
                        f"{what}: status {general.status.name} from ODC: {clip(general.msg)}"
                    )
            except IntegrationError as exc:
                self.report(call, ONGOING, f"perform ODC call: {step}", DONE_ERROR, str(exc))
                raise
            self.report(call, ONGOING, f"perform ODC call: {step}", DONE_OK)
            if general.state:
                self.partitions.setdefault(env_id, {})["state"] = general.state
            return reply

        async def set_properties(properties: Mapping[str, str], run: int = 0) -> None:
            request = pb.SetPropertiesRequest(
                partitionid=env_id,
                runnr=run,
                timeout=odc_timeout(),
                properties=[pb.Property(key=key, value=value) for key, value in sorted(properties.items())],
            )
            await send("SetProperties", lambda stub, t: stub.set_properties(request, timeout=t))

        def run_number() -> int:
            text = call.var("run_number") or call.var("last_run_number")
            return int(text) if text.isdigit() else 0

        async def partition_initialize() -> str:
            option = call.var("pdp_config_option")
            request = pb.RunRequest(partitionid=env_id, timeout=odc_timeout())
            if option in ("Repository hash", "Repository path"):
                if not call.has("odc_script"):
                    raise IntegrationError(
                        "EPN PartitionInitialize call failed: cannot acquire ODC script "
                        "(odc_script: call odc.GenerateEPNWorkflowScript() and return its output there)"
                    )
                request.script = call.var("odc_script")
            elif option == "Manual XML":
                if not call.has("odc_topology"):
                    raise IntegrationError(
                        "EPN PartitionInitialize call failed: cannot acquire ODC topology (odc_topology)"
                    )
                request.topology = call.var("odc_topology")
            else:
                raise IntegrationError(
                    f"EPN PartitionInitialize call failed: pdp_config_option {option[:40]!r} is not "
                    "'Repository hash', 'Repository path' or 'Manual XML'"
                )
            if call.flag("odc_extract_topology_resources"):
                request.extract_topo_resources = True
            else:
                for name in ("odc_plugin", "odc_resources"):
                    if not call.var(name):
                        raise IntegrationError(f"EPN PartitionInitialize call failed: {name} is not set")
                request.plugin, request.resources = call.var("odc_plugin"), call.var("odc_resources")
            call.set_var(INITIALIZED, "true")
            self.partitions[env_id] = {"state": "INITIALIZING"}
            await send("Run", lambda stub, t: stub.run(request, timeout=t))
            return ""

        async def configure() -> str:
            properties = {"environment_id": env_id}
            for key, name in (
                ("run_type", "run_type"),
                ("lhc_period", "lhc_period"),
                ("force_run_as_raw", "pdp_force_run_as_raw"),
                ("pdp_beam_type", "pdp_beam_type"),
            ):
                if call.has(name):
                    properties[key] = call.var(name)
            if call.has("detectors"):
                properties["detectors"] = ",".join(sorted(detector_list(call, "detectors")))
            if call.var("pdp_override_run_start_time"):
                properties["orbit-reset-time"] = call.var("pdp_override_run_start_time")
            await set_properties(properties)
            request = pb.ConfigureRequest(request=state_request())
            await send("Configure", lambda stub, t: stub.configure(request, timeout=t))
            return ""

        async def start() -> str:
            run = run_number()
            properties = {
                "runNumber": call.var("run_number"),
                "cleanup": call.var("__fmq_cleanup_count") or "1",
            }
            properties.update({key: call.var(key) for key in START_KEYS if call.has(key)})
            await set_properties(properties, run)
            request = pb.StartRequest(request=state_request(run))
            await send("Start", lambda stub, t: stub.start(request, timeout=t))
            self.partitions.setdefault(env_id, {})["runNumber"] = run
            return ""

        async def stop() -> str:
            run = run_number()
            properties = {key: call.var(key) for key in STOP_KEYS if call.has(key)}
            if properties:
                try:
                    await set_properties(properties, run)
                except IntegrationError as exc:
                    log.warning("environment %s: %s; ODC Stop follows anyway", env_id, exc)
            request = pb.StopRequest(request=state_request(run))
            await send("Stop", lambda stub, t: stub.stop(request, timeout=t))
            return ""

        async def reset() -> str:
            request = pb.ResetRequest(request=state_request())
            await send("Reset", lambda stub, t: stub.reset(request, timeout=t))
            return ""

        async def terminate() -> None:
            request = pb.TerminateRequest(request=state_request())
            await send("Terminate", lambda stub, t: stub.terminate(request, timeout=t))
            shutdown = pb.ShutdownRequest(partitionid=env_id, timeout=odc_timeout())
            await send("Shutdown", lambda stub, t: stub.shutdown(shutdown, timeout=t))
            self.partitions.pop(env_id, None)

        async def partition_terminate() -> str:
            if not call.has(INITIALIZED):
                log.info(
                    "environment %s: PartitionInitialize was not called, skipping PartitionTerminate", env_id
                )
                return ""
            await terminate()
            return ""

        async def ensure_cleanup() -> str:
            if env_id in self.partitions:
                await terminate()
            return ""

        return self.operations(
            call,
            {
                "PartitionInitialize": partition_initialize,
                "Configure": configure,
                "Start": start,
                "Stop": stop,
                "Reset": reset,
                "PartitionTerminate": partition_terminate,
                "EnsureCleanup": ensure_cleanup,
            },
        )
