"""`dcs`: the Detector Control System through its ECS gateway (service `dcs.Configurator`), as the
original's plugin.

The plugin keeps a `Subscribe` stream open: the gateway sends heartbeats and the detector matrix, which
says per detector whether PFR and SOR are possible now (PFR_AVAILABLE/SOR_AVAILABLE). Operations send
one request for all the environment's detectors and read a stream of per-detector answers; a detector
has succeeded when it reports RUN_OK.

- PrepareForRun (CONFIGURE, non-critical in the real workflows): waits up to `dcs_pfr_grace_period`
  for every detector of `dcs_detectors` to be PFR-compatible, then prepares those that are; it fails
  when none is, or when any prepared detector does not reach RUN_OK.
- StartOfRun: waits up to `dcs_sor_grace_period`; if a detector is still not SOR-compatible no SOR is
  sent at all and the call fails naming it; otherwise SOR for all, failing when any detector does not
  reach RUN_OK. Once SOR is sent, an EOR is owed for the run (Cleanup sends it if EndOfRun does not).
- EndOfRun: no compatibility check; fails when any detector does not reach RUN_OK.
Arguments: `run_type` (COSMICS is sent as PHYSICS, unknown or unset as TECHNICAL), the run number, and
per detector the JSON objects `dcs_sor_parameters` (PFR and SOR, as in the original) or
`dcs_eor_parameters`, overridden by `<det>_dcs_sor_parameters`/`<det>_dcs_eor_parameters`;
`dcs_<op>_state_sequence` is passed as STATE_SEQUENCE (the gateway's mock uses it). ECS's TST is DCS's
AGD. Operations time out after the call's timeout (45 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from aliecs.events import DONE_ERROR, DONE_OK, ONGOING, STARTED, IntegratedServiceEvent
from aliecs.generated import dcs as pb
from aliecs.integrations.base import READY, TRANSIENT_FAILURE, CallContext, IntegrationError
from aliecs.integrations.grpcbase import PROBE_INTERVAL, GrpcPlugin, clip
from aliecs.integrations.vars import detector_list, run_number, string_map

log = logging.getLogger(__name__)

DCS_TIMEOUT = 45.0
GRACE_POLL = 1.0  # the original checks the matrix at 1 Hz during a grace period


def to_dcs(detector: str) -> int:
    name = detector.strip().upper()
    name = "AGD" if name == "TST" else name
    try:
        return pb.Detector.from_string(name)
    except ValueError:
        raise IntegrationError(f"invalid DCS detector {detector[:20]!r}") from None


def to_ecs(detector: int) -> str:
    name = pb.Detector(detector).name or str(detector)
    return "TST" if name == "AGD" else name


def state_name(state: int) -> str:
    return pb.DetectorState(state).name or str(state)


@dataclass
class Outcome:
    """Per-detector answers of one operation."""

    states: dict[int, int]
    messages: dict[int, str] = field(default_factory=dict)

    def failed(self) -> list[int]:
        return [det for det, state in self.states.items() if state != pb.DetectorState.RUN_OK]

    def describe(self, detectors: list[int]) -> str:
        parts = []
        for det in detectors:
            message = self.messages.get(det, "")
            parts.append(f"{to_ecs(det)} ({state_name(self.states[det])}{': ' + message if message else ''})")
        return ", ".join(parts)


class DcsPlugin(GrpcPlugin):
    name = "dcs"
    pretty_name = "DCS"
    endpoint_setting = "dcsServiceEndpoint"
    default_timeout = DCS_TIMEOUT
    probe_while_away = False  # the subscription says whether the gateway is there

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.matrix: dict[int, pb.DetectorInfo] = {}
        self.pending_eor: dict[str, int] = {}  # environment id -> run whose EOR is owed
        self._changed = asyncio.Event()
        self._subscription: asyncio.Task[None] | None = None

    # -- the subscription: connection state and detector matrix ------------------------------------

    async def start(self) -> None:
        await super().start()
        self._subscription = asyncio.create_task(self._subscribe(), name="aliecs-plugin-dcs-subscribe")

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._subscription
            self._subscription = None
        await super().stop()

    async def _subscribe(self) -> None:
        while True:
            try:
                stub = pb.ConfiguratorStub(self._channel("dcs.Subscribe"))
                async for event in stub.subscribe(pb.SubscriptionRequest(instance_id="aliecs")):
                    self.set_state(READY)
                    if event.detector_matrix:
                        self._update(event.detector_matrix)
                self.set_state(TRANSIENT_FAILURE, "the DCS subscription was closed by the gateway")
            except (GRPCError, StreamTerminatedError, ProtocolError, OSError, IntegrationError) as exc:
                self.set_state(TRANSIENT_FAILURE, f"DCS subscription: {clip(str(exc)) or type(exc).__name__}")
            await asyncio.sleep(PROBE_INTERVAL)  # poll: reconnect after a pause

    def _update(self, matrix: list[pb.DetectorInfo]) -> None:
        for info in matrix:
            self.matrix[info.detector] = info
        self._changed.set()
        self._changed = asyncio.Event()
        self.publish(
            IntegratedServiceEvent(
                name="dcs.updateDetectorOpAvailabilities", payload=_json(self.data()["detectors"])
            )
        )

    def data(self) -> dict[str, Any]:
        detectors = {
            to_ecs(det): {
                "state": state_name(info.state),
                "pfrAvailability": state_name(info.pfr_availability),
                "sorAvailability": state_name(info.sor_availability),
            }
            for det, info in sorted(self.matrix.items())
        }
        return {**super().data(), "detectors": detectors}

    def environment_data(self, environment_id: str) -> dict[str, Any] | None:
        run = self.pending_eor.get(environment_id)
        return {"pendingEOR": run} if run is not None else None

    # -- operations ---------------------------------------------------------------------------------

    def _availability(self, detectors: list[int], sor: bool) -> dict[int, int]:
        found = {}
        for det in detectors:
            info = self.matrix.get(det)
            if det == pb.Detector.DCS:
                continue
            found[det] = (
                (info.sor_availability if sor else info.pfr_availability)
                if info
                else pb.DetectorState.NULL_STATE
            )
        return found

    async def _compatible(
        self, call: CallContext, detectors: list[int], sor: bool, grace: float
    ) -> tuple[list[int], str]:
        """Wait up to `grace` seconds for every detector to accept the operation (unknown counts as
        accepting); the compatible detectors and, if some are not, why."""
        wanted = pb.DetectorState.SOR_AVAILABLE if sor else pb.DetectorState.PFR_AVAILABLE
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            known = self._availability(detectors, sor)
            ok = [det for det, state in known.items() if state in (wanted, pb.DetectorState.NULL_STATE)]
            bad = [f"{to_ecs(det)} in {state_name(state)}" for det, state in known.items() if det not in ok]
            left = deadline - loop.time()
            if not bad or left <= 0:
                return ok, ("detectors are in incompatible states: " + "; ".join(bad)) if bad else ""
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait(), min(GRACE_POLL, left)
                )  # poll: or a matrix update

    def _requests(
        self, call: CallContext, detectors: list[int], op: str
    ) -> list[pb.DetectorOperationRequest]:
        kind = "eor" if op == "eor" else "sor"  # PFR takes the SOR parameters, as the original
        general = string_map(call, f"dcs_{kind}_parameters")
        requests = []
        for det in detectors:
            params = {**general, **string_map(call, f"{to_ecs(det).lower()}_dcs_{kind}_parameters")}
            sequence = call.var(f"dcs_{op}_state_sequence")
            if sequence:
                params["STATE_SEQUENCE"] = sequence
            requests.append(pb.DetectorOperationRequest(detector=pb.Detector(det), extra_parameters=params))
        return requests

    async def _stream(
        self,
        call: CallContext,
        op: str,
        what: str,
        detectors: list[int],
        answers: AsyncIterator[pb.RunEvent],
        timeout: float,
    ) -> Outcome:
        """Read per-detector answers until the gateway closes the stream or every detector is final."""
        outcome = Outcome({det: pb.DetectorState.NULL_STATE for det in detectors})
        step = f"perform DCS call: {op}"
        self.report(call, ONGOING, step, STARTED, payload={"detectors": [to_ecs(d) for d in detectors]})
        try:
            with self.failures(what, timeout):
                async for event in answers:
                    if event.detector not in outcome.states:
                        continue
                    outcome.states[event.detector] = event.state
                    if event.message:
                        outcome.messages[event.detector] = clip(event.message)
                    self.report(
                        call,
                        ONGOING,
                        step,
                        ONGOING,
                        payload={"detector": to_ecs(event.detector), "state": state_name(event.state)},
                    )
                    if all(state in _FINAL for state in outcome.states.values()):
                        break
        except IntegrationError as exc:
            pending = [det for det, state in outcome.states.items() if state not in _FINAL]
            detail = f"; no final answer from {', '.join(to_ecs(d) for d in pending)}" if pending else ""
            self.report(call, ONGOING, step, DONE_ERROR, f"{exc}{detail}")
            raise IntegrationError(f"{exc}{detail}") from exc
        self.report(call, ONGOING, step, DONE_ERROR if outcome.failed() else DONE_OK)
        return outcome

    def functions(self, call: CallContext) -> Mapping[str, Callable[..., Any]]:
        env_id = call.environment_id

        def detectors() -> list[int]:
            return [to_dcs(name) for name in detector_list(call, "dcs_detectors", '["NULL_DETECTOR"]')]

        def run_type() -> int:
            name = call.var("run_type").strip().upper()
            if name == "COSMICS":
                return pb.RunType.PHYSICS
            try:
                return pb.RunType.from_string(name) if name else pb.RunType.TECHNICAL
            except ValueError:
                return pb.RunType.TECHNICAL

        def stub(what: str) -> pb.ConfiguratorStub:
            return pb.ConfiguratorStub(self._channel(what))

        async def prepare_for_run() -> str:
            what = "DCS PrepareForRun call failed"
            try:
                wanted = detectors()
                ready, why = await self._compatible(
                    call, wanted, False, call.duration("dcs_pfr_grace_period", 0)
                )
                if not ready:
                    raise IntegrationError(f"no detector can do PFR: {why}")
            except IntegrationError as exc:
                raise IntegrationError(f"{what}: {exc}") from exc
            if why:
                log.warning("environment %s: PFR only for %s: %s", env_id, ", ".join(map(to_ecs, ready)), why)
            timeout = call.deadline(self.default_timeout)
            request = pb.PfrRequest(
                detectors=self._requests(call, ready, "pfr"),
                run_type=pb.RunType(run_type()),
                partition_id=env_id,
            )
            outcome = await self._stream(
                call,
                "PrepareForRun",
                what,
                ready,
                stub(what).prepare_for_run(request, timeout=timeout),
                timeout,
            )
            if outcome.failed():
                raise IntegrationError(f"{what}: PFR failed for {outcome.describe(outcome.failed())}")
            return ""

        async def start_of_run() -> str:
            what = "DCS StartOfRun call failed"
            try:
                number, wanted = run_number(call), detectors()
                _ready, why = await self._compatible(
                    call, wanted, True, call.duration("dcs_sor_grace_period", 0)
                )
                if why:
                    raise IntegrationError(why)
            except IntegrationError as exc:
                raise IntegrationError(f"{what}: {exc}") from exc
            timeout = call.deadline(self.default_timeout)
            request = pb.SorRequest(
                detectors=self._requests(call, wanted, "sor"),
                run_type=pb.RunType(run_type()),
                run_number=number,
            )
            self.pending_eor[env_id] = number  # from here on an EOR is owed, whatever SOR answers
            outcome = await self._stream(
                call, "StartOfRun", what, wanted, stub(what).start_of_run(request, timeout=timeout), timeout
            )
            if outcome.failed():
                raise IntegrationError(
                    f"{what}: SOR failed for {outcome.describe(outcome.failed())}, "
                    "DCS EOR will run anyway for this run"
                )
            return ""

        async def end_of_run(number: int | None = None) -> str:
            what = "DCS EndOfRun call failed"
            try:
                number, wanted = number or run_number(call, end_of_run=True), detectors()
            except IntegrationError as exc:
                raise IntegrationError(f"{what}: {exc}") from exc
            timeout = call.deadline(self.default_timeout)
            request = pb.EorRequest(detectors=self._requests(call, wanted, "eor"), run_number=number)
            self.pending_eor.pop(env_id, None)  # EOR is sent once, whatever it answers
            outcome = await self._stream(
                call, "EndOfRun", what, wanted, stub(what).end_of_run(request, timeout=timeout), timeout
            )
            if outcome.failed():
                raise IntegrationError(
                    f"{what}: EOR failed for {outcome.describe(outcome.failed())}, "
                    "DCS EOR will NOT run again for this run"
                )
            return ""

        async def cleanup() -> str:
            """After an error or at teardown: the EOR still owed for this environment's run, if any."""
            owed = self.pending_eor.get(env_id)
            return await end_of_run(owed) if owed is not None else ""

        return self.operations(
            call,
            {
                "PrepareForRun": prepare_for_run,
                "StartOfRun": start_of_run,
                "EndOfRun": end_of_run,
                "Cleanup": cleanup,
            },
        )


# Answers after which a detector says nothing more for this operation.
_FINAL = {
    pb.DetectorState.RUN_OK,
    pb.DetectorState.RUN_FAILURE,
    pb.DetectorState.SOR_FAILURE,
    pb.DetectorState.EOR_FAILURE,
    pb.DetectorState.ERROR,
    pb.DetectorState.DEAD,
    pb.DetectorState.TIMEOUT,
}


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
