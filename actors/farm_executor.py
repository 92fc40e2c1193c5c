"""An executor whose tasks are endpoints of a fake task farm (one farm process per node).

`Core.embedded(executor_class=FarmExecutorActor)` runs workflows of thousands of controllable tasks
on a small machine: instead of spawning a process per task, the node's executor asks its farm to open
an OCC endpoint on the task's control port. Everything after that is the ordinary `ProcessActor`
(wait for STANDBY, transitions, event stream, the walk to DONE) over real OCC gRPC, so load tests
measure the control system's real path. Only "how the task lives and dies" differs: `FarmEndpoint`.

The task's command line carries the endpoint's behaviour (`aliecs.fakefarm.Behaviour` options, e.g.
``fakefarm-task --latency 0.01 --fail-rate 0.05``); the command itself is never run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shlex
from collections.abc import Sequence
from typing import Any

from actors.executor import ExecutorActor, ProcessActor, TaskLife
from aliecs.cluster.inventory import NodeSpec
from aliecs.executor.process import ExitInfo, LaunchError, LaunchSpec
from aliecs.fakefarm import CLOSED_CODE, FarmClient, FarmError

log = logging.getLogger(__name__)


class FarmEndpoint:
    """One farm endpoint seen as a task process (`TaskLife`): alive until the farm says it left."""

    def __init__(self, farm: FarmClient, port: int) -> None:
        self.farm = farm
        self.port = port
        self._exit: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()

    def gone(self, code: int) -> None:
        if not self._exit.done():
            self._exit.set_result(ExitInfo(code))

    @property
    def pid(self) -> int:
        return self.farm.pid

    @property
    def alive(self) -> bool:
        return not self._exit.done()

    @property
    def exit_info(self) -> ExitInfo | None:
        return self._exit.result() if self._exit.done() else None

    def exited(self) -> asyncio.Future[ExitInfo]:
        return self._exit

    async def wait(self, timeout: float | None = None) -> ExitInfo | None:
        try:
            return await asyncio.wait_for(asyncio.shield(self._exit), timeout)
        except TimeoutError:
            return None

    async def terminate(self, term_grace: float = 2.0, int_grace: float = 3.0) -> ExitInfo:
        """Close the endpoint (the farm answers once it is gone, after telling us its exit)."""
        if self.alive:
            try:
                await self.farm.close(self.port, timeout=term_grace + int_grace)
            except FarmError as exc:
                log.info("farm endpoint %d: close failed (%s); counting it as gone", self.port, exc)
            self.gone(CLOSED_CODE)
        return await self._exit

    def log_tail(self, lines: int = 5) -> list[str]:
        return []


def behaviour_argv(spec: LaunchSpec) -> tuple[str, ...]:
    """The words of the task's command line (the farm reads its options from them)."""
    return _words(spec.command, spec.arguments, spec.shell)


@functools.lru_cache(maxsize=1024)
def _words(command: str, arguments: tuple[str, ...], shell: bool) -> tuple[str, ...]:
    # Cached: thousands of tasks of one class share a command line, and shlex is slow (20 us).
    if shell:
        return tuple(shlex.split(" ".join([command, *arguments])))
    return (command, *arguments)


class FarmNode:
    """A node's farm and its open endpoints, shared by the node's executor and process actors.

    Process actors call `open_endpoint` directly (same loop) rather than asking the executor actor:
    a launch queued behind the executor's mailbox would serialise the node's launches.
    """

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.client = FarmClient(self._endpoint_gone)
        self.endpoints: dict[int, FarmEndpoint] = {}
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.start()
        self._watch = asyncio.ensure_future(self._watch_farm())

    async def stop(self) -> None:
        await self.client.stop()
        if self._watch is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    async def _watch_farm(self) -> None:
        """If the farm dies, every endpoint died with it: say so as a process exit."""
        code = await self.client.wait_gone()
        for endpoint in list(self.endpoints.values()):
            endpoint.gone(code if code != 0 else CLOSED_CODE)
        self.endpoints.clear()

    def _endpoint_gone(self, port: int, code: int) -> None:
        endpoint = self.endpoints.pop(port, None)
        if endpoint is not None:
            endpoint.gone(code)

    async def open_endpoint(self, port: int, argv: Sequence[str]) -> FarmEndpoint:
        endpoint = FarmEndpoint(self.client, port)
        self.endpoints[port] = endpoint
        try:
            await self.client.open(port, argv)
        except FarmError as exc:
            self.endpoints.pop(port, None)
            raise LaunchError(f"farm of {self.hostname} cannot open port {port}: {exc}") from exc
        return endpoint


class FarmProcessActor(ProcessActor):
    """A `ProcessActor` whose task is opened in the node's farm instead of spawned."""

    def __init__(
        self, spec: LaunchSpec, control_port: int | None, listener: Any, controllable: bool, farm: FarmNode
    ) -> None:
        super().__init__(spec, control_port, listener, controllable)
        self.farm = farm

    async def _spawn(self) -> TaskLife:
        if self.control_port is None or not self.controllable:
            raise LaunchError(f"{self.spec.name}: a farm task must be controllable (it has no process)")
        return await self.farm.open_endpoint(self.control_port, behaviour_argv(self.spec))


class FarmExecutorActor(ExecutorActor):
    """The executor of one node, with one fake farm process serving all of the node's tasks."""

    def __init__(self, node: NodeSpec) -> None:
        super().__init__(node)
        self.farm = FarmNode(node.hostname)

    async def on_start(self) -> None:
        await self.farm.start()

    def _start_process_actor(
        self, spec: LaunchSpec, control_port: int | None, listener: Any, controllable: bool
    ) -> Any:
        return self.start_child(FarmProcessActor, spec, control_port, listener, controllable, self.farm)

    async def on_stop(self) -> None:
        """Children (and so endpoints) are stopped by now; the farm goes last."""
        await self.farm.stop()
