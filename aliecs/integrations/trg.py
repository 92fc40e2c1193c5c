"""`trg`: the trigger system (the CTP's ECS daemon, service `ctpd.CTPd`), as the original's plugin.

Which variables become arguments:
- `trg_detectors` (JSON list) -> the detectors, lower case, space separated;
- `run_type` -> PrepareForRun's runtype ("NONE" when unset);
- `trg_global_config` -> RunLoad's config, `ctp_readout_enabled` -> its ctp_readout_included;
- `trg_runtime_config` -> RunStart's config;
- `trg_global_run_enabled`: a run of fewer than two detectors with this "false" is a standalone run:
  RunLoad and RunUnload are skipped, and RunStart/RunStop name the detector; otherwise (a global run)
  RunStart/RunStop send an empty detector.
A reply with rc != 0 fails the call ("response code N from TRG: <msg>"). RunStart and RunStop record
`trg_start_time_ms`/`trg_end_time_ms` for Bookkeeping. Timeouts default to 5 s per call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aliecs.events import DONE_ERROR, DONE_OK, ONGOING, STARTED
from aliecs.generated import ctpd
from aliecs.integrations.base import CallContext, IntegrationError
from aliecs.integrations.grpcbase import GrpcPlugin, clip
from aliecs.integrations.vars import detector_list, now_ms, run_number

TRG_TIMEOUT = 5.0


class TrgPlugin(GrpcPlugin):
    name = "trg"
    pretty_name = "Trigger"
    endpoint_setting = "trgServiceEndpoint"
    default_timeout = TRG_TIMEOUT

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        #: Per environment: the run the trigger system knows and where it stands (LOADED, RUNNING...).
        self.runs: dict[str, dict[str, Any]] = {}

    def environment_data(self, environment_id: str) -> dict[str, Any] | None:
        return self.runs.get(environment_id)

    async def _send(self, call: CallContext, operation: str, request: Any) -> None:
        """One request; a refusal or a failure raises, saying which."""
        what, step = f"TRG {operation} call failed", f"perform TRG call: {operation}"
        timeout = call.deadline(self.default_timeout)
        stub = ctpd.CtPdStub(self._channel(what))
        methods: dict[str, Callable[..., Awaitable[ctpd.RunReply]]] = {
            "PrepareForRun": stub.prepare_for_run,
            "RunLoad": stub.run_load,
            "RunStart": stub.run_start,
            "RunStop": stub.run_stop,
            "RunUnload": stub.run_unload,
        }
        self.report(call, ONGOING, step, STARTED, payload={"request": request.to_dict()})
        try:
            reply = await self.request(what, methods[operation](request, timeout=timeout), timeout)
            if reply.rc != 0:
                raise IntegrationError(f"{what}: response code {reply.rc} from TRG: {clip(reply.msg)}")
        except IntegrationError as exc:
            self.report(call, ONGOING, step, DONE_ERROR, str(exc))
            raise
        self.report(call, ONGOING, step, DONE_OK)

    def functions(self, call: CallContext) -> Mapping[str, Callable[..., Any]]:
        env_id = call.environment_id

        def detectors() -> str:
            return " ".join(detector_list(call, "trg_detectors")).lower()

        def standalone(names: str) -> bool:
            return len(names.split(" ")) < 2 and call.var("trg_global_run_enabled") == "false"

        def global_run(names: str) -> bool:
            return len(names.split(" ")) >= 2 or call.var("trg_global_run_enabled") == "true"

        async def prepare_for_run() -> str:
            request = ctpd.RunPrepareRequest(runtype=call.var("run_type") or "NONE", detectors=detectors())
            await self._send(call, "PrepareForRun", request)
            return ""

        async def run_load() -> str:
            names, number = detectors(), run_number(call)
            call.set_var("trg_start_time_ms", "")
            call.set_var("trg_end_time_ms", "")
            if standalone(names):
                return ""  # a standalone run is not loaded
            request = ctpd.RunLoadRequest(
                runn=number,
                config=call.var("trg_global_config"),
                detectors=names,
                ctp_readout_included=call.flag("ctp_readout_enabled"),
            )
            await self._send(call, "RunLoad", request)
            self.runs[env_id] = {"runNumber": number, "state": "LOADED", "global": True}
            return ""

        async def run_start() -> str:
            names, number = detectors(), run_number(call)
            request = ctpd.RunStartRequest(
                runn=number,
                config=call.var("trg_runtime_config"),
                detector="" if global_run(names) else names,
            )
            await self._send(call, "RunStart", request)
            self.runs[env_id] = {"runNumber": number, "state": "RUNNING", "global": global_run(names)}
            call.set_var("trg_start_time_ms", str(now_ms()))
            return ""

        async def stop(number: int) -> None:
            names = detectors()
            request = ctpd.RunStopRequest(runn=number, detector="" if global_run(names) else names)
            await self._send(call, "RunStop", request)
            self.runs[env_id] = {**self.runs.get(env_id, {}), "runNumber": number, "state": "STOPPED"}
            call.set_var("trg_end_time_ms", str(now_ms()))

        async def unload(number: int) -> None:
            if standalone(detectors()):
                return
            await self._send(call, "RunUnload", ctpd.RunStopRequest(runn=number))
            self.runs.pop(env_id, None)

        async def run_stop() -> str:
            await stop(run_number(call, end_of_run=True))
            return ""

        async def run_unload() -> str:
            await unload(run_number(call, end_of_run=True))
            return ""

        async def ensure_run_stop() -> str:
            """After an error or at teardown: stop the run this environment left running, if any."""
            known = self.runs.get(env_id)
            if known is not None and known["state"] == "RUNNING":
                await stop(int(known["runNumber"]))
            return ""

        async def ensure_run_unload() -> str:
            known = self.runs.get(env_id)
            if known is not None and known["state"] in ("LOADED", "STOPPED"):
                await unload(int(known["runNumber"]))
            return ""

        async def cleanup() -> str:
            await ensure_run_stop()
            await ensure_run_unload()
            return ""

        return self.operations(
            call,
            {
                "PrepareForRun": prepare_for_run,
                "RunLoad": run_load,
                "RunStart": run_start,
                "RunStop": run_stop,
                "RunUnload": run_unload,
                "EnsureRunStop": ensure_run_stop,
                "EnsureRunUnload": ensure_run_unload,
                "Cleanup": cleanup,
            },
        )
