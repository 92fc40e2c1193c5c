"""`ddsched`: the Data Distribution scheduler (service `o2.DataDistribution.Control.DataDistributionControl`),
as the original's plugin.

PartitionInitialize tells the scheduler which nodes form the partition (the environment id): every
role of the workflow that has `dd_discovery_ib_hostname` contributes its `dd_discovery_stfs_id`
(StfSender) or else `dd_discovery_stfb_id` (StfBuilder) to the host maps, and every `ddsched_*`
variable but `ddsched_enabled` goes, prefix cut, to the partition parameters. The answer must be
PARTITION_CONFIGURING or PARTITION_CONFIGURED; the plugin then polls PartitionStatus every 100 ms
until CONFIGURED, within the call's timeout (30 s by default). PartitionTerminate does the same
towards PARTITION_TERMINATED. Any other state fails the call, naming it and the scheduler's message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from aliecs.events import DONE_ERROR, DONE_OK, ONGOING, STARTED
from aliecs.generated.o2.DataDistribution import Control as dd
from aliecs.integrations.base import CallContext, IntegrationError
from aliecs.integrations.ddsched_wire import DataDistributionControlStub
from aliecs.integrations.grpcbase import GrpcPlugin, clip

DDSCHED_TIMEOUT = 30.0
POLL_INTERVAL = 0.1


class DdSchedPlugin(GrpcPlugin):
    name = "ddsched"
    pretty_name = "DD scheduler"
    endpoint_setting = "ddSchedulerEndpoint"
    default_timeout = DDSCHED_TIMEOUT

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.partitions: dict[str, str] = {}  # environment id -> last known partition state

    def environment_data(self, environment_id: str) -> dict[str, Any] | None:
        state = self.partitions.get(environment_id)
        return {"partitionState": state} if state is not None else None

    async def _drive(
        self,
        call: CallContext,
        operation: str,
        send: Callable[[DataDistributionControlStub, float], Any],
        accepted: tuple[int, int],
    ) -> None:
        """Send the request, then poll until the partition reaches `accepted[1]` (or fail)."""
        what = f"DDsched {operation} call failed"
        timeout = call.deadline(self.default_timeout)
        deadline = asyncio.get_running_loop().time() + timeout
        info = dd.PartitionInfo(environment_id=call.environment_id, partition_id=call.environment_id)
        step = f"perform DD scheduler call: {operation}"
        self.report(call, ONGOING, step, STARTED)
        try:
            stub = DataDistributionControlStub(self._channel(what))
            response: dd.PartitionResponse = await self.request(what, send(stub, timeout), timeout)
            state = response.partition_state
            self.partitions[call.environment_id] = state.name
            if state not in accepted:
                raise IntegrationError(
                    f"{what}: {operation} returned unexpected state {state.name} "
                    f"(expected: {_name(accepted[0])}): {clip(response.info_message)}"
                )
            self.report(
                call, ONGOING, "poll for DD partition state", STARTED, payload={"lastKnownState": state.name}
            )
            while state != accepted[1]:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise IntegrationError(
                        f"{what}: {operation} timeout exceeded ({timeout:g}s). "
                        f"Latest state {state.name} (expected: {_name(accepted[1])})"
                    )
                await asyncio.sleep(min(POLL_INTERVAL, left))  # poll: the service has no notifications
                response = await self.request(what, stub.partition_status(info, timeout=left), left)
                state = response.partition_state
                self.partitions[call.environment_id] = state.name
                if state not in accepted:
                    raise IntegrationError(
                        f"{what}: {operation} landed on unexpected state {state.name} "
                        f"(expected: {_name(accepted[1])}): {clip(response.info_message)}"
                    )
        except IntegrationError as exc:
            self.report(call, ONGOING, step, DONE_ERROR, str(exc))
            raise
        self.report(call, ONGOING, step, DONE_OK, payload={"lastKnownState": state.name})

    def functions(self, call: CallContext) -> Mapping[str, Callable[..., Any]]:
        env_id = call.environment_id
        info = dd.PartitionInfo(environment_id=env_id, partition_id=env_id)

        async def partition_initialize() -> str:
            stfb: dict[str, str] = {}
            stfs: dict[str, str] = {}
            for stack in call.roles():
                host = stack.get("dd_discovery_ib_hostname")
                if host is None:
                    continue
                if "dd_discovery_stfs_id" in stack:
                    stfs[stack["dd_discovery_stfs_id"]] = host
                elif "dd_discovery_stfb_id" in stack:
                    stfb[stack["dd_discovery_stfb_id"]] = host
            params = {
                key.removeprefix("ddsched_"): value
                for key, value in call.vars.items()
                if key.startswith("ddsched_") and key != "ddsched_enabled"
            }
            request = dd.PartitionInitRequest(
                partition_info=info, stfb_host_id_map=stfb, stfs_host_id_map=stfs, partition_params=params
            )
            await self._drive(
                call,
                "PartitionInitialize",
                lambda stub, timeout: stub.partition_initialize(request, timeout=timeout),
                (dd.PartitionState.PARTITION_CONFIGURING, dd.PartitionState.PARTITION_CONFIGURED),
            )
            return ""

        async def partition_terminate() -> str:
            request = dd.PartitionTermRequest(partition_info=info)
            await self._drive(
                call,
                "PartitionTerminate",
                lambda stub, timeout: stub.partition_terminate(request, timeout=timeout),
                (dd.PartitionState.PARTITION_TERMINATING, dd.PartitionState.PARTITION_TERMINATED),
            )
            return ""

        async def ensure_termination() -> str:
            """At teardown: terminate a partition that was initialized and not terminated."""
            state = self.partitions.get(env_id)
            if state is not None and state != _name(dd.PartitionState.PARTITION_TERMINATED):
                await partition_terminate()
            self.partitions.pop(env_id, None)
            return ""

        return self.operations(
            call,
            {
                "PartitionInitialize": partition_initialize,
                "PartitionTerminate": partition_terminate,
                "EnsureTermination": ensure_termination,
            },
        )


def _name(state: int) -> str:
    return dd.PartitionState(state).name or str(state)
