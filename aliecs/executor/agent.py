"""The executor of one node: owns that node's task processes and answers the core in batches.

The core sends one request per node per step (launch, transition, kill); the agent fans out to the
node's process actors concurrently, under the request's deadline, and answers per task. What tasks do
on their own (exits, device events) goes to the `EventOutbox`, numbered, until the core acknowledges
it. The agent runs inside `aliecs-executor` (the default, one process per node, so that tasks outlive
the core) or embedded in the core (the in-process fake executors of the scale benchmarks): the same
code either way.

Tasks outlive their executor too. The agent keeps a small state file of what it runs (task id, pid and
the pid's start time, control port, state); an executor started again on the same node reads it and
adopts the processes that are still alive (watched through a pidfd, reconnected over OCC), so killing
an executor does not kill a run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from actors.basic_task import BasicProcessActor
from actors.executor import ExecutorActor, PortInUseError, ProcessActor, TaskStartError, TaskTransitionError
from actors.messages import BasicTaskTerminated, ForgetProcess, ProcessExited
from actors.runtime import AsyncActorRef
from aliecs.cluster.inventory import NodeSpec
from aliecs.executor.orders import HookOutcome, LaunchOrder, TaskResult, TaskStatus, TransitionOrder
from aliecs.executor.outbox import EventOutbox
from aliecs.executor.process import ExitInfo, LaunchSpec, TaskProcess, process_start_time

log = logging.getLogger(__name__)

# Extra time granted on top of a deadline before the agent stops waiting for a process actor.
_MARGIN = 2.0
# Process actors asked per event loop iteration (thousands at once would stall the loop).
_CHUNK = 100
_VANISHED = ExitInfo(-1, detail="ended while no executor was watching it (exit code unknown)")


@dataclass
class _Held:
    """A task this executor runs."""

    order: LaunchOrder
    ref: AsyncActorRef[ProcessActor]  # the task's process actor
    pid: int = 0
    start_time: int | None = None
    state: str = "STANDBY"
    alive: bool = True


class NodeAgent:
    def __init__(
        self,
        node: NodeSpec,
        executor_class: type[ExecutorActor] = ExecutorActor,
        state_file: Path | None = None,
    ) -> None:
        self.node = node
        self.executor_class = executor_class
        self.state_file = state_file
        self.outbox = _ReportingOutbox(self)
        self.tasks: dict[str, _Held] = {}
        self.executor: AsyncActorRef[ExecutorActor] | None = None

    def _executor(self) -> AsyncActorRef[ExecutorActor]:
        if self.executor is None:
            raise RuntimeError(f"the agent of {self.node.hostname} is not started")
        return self.executor

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.executor = self.executor_class.start(self.node)
        if self.state_file is not None:
            await self._adopt_from(self.state_file)

    async def stop(self, kill_tasks: bool = True) -> None:
        """Kill every task (unless the tasks are meant to outlive this executor), stop the actors."""
        if kill_tasks and self.tasks:
            await self.kill(list(self.tasks))
        if self.executor is not None:
            if not kill_tasks:
                # The process actors kill their process when they stop: let them go without it.
                for held in self.tasks.values():
                    await held.ref.proxy().release()
            await self.executor.stop()
            self.executor = None

    # -- batches from the core -------------------------------------------------------------------

    async def launch(self, orders: Sequence[LaunchOrder], startup_timeout: float) -> list[TaskResult]:
        results = await _in_chunks(orders, lambda order: self._launch_one(order, startup_timeout))
        self._save()
        return results

    async def _launch_one(self, order: LaunchOrder, startup_timeout: float) -> TaskResult:
        task_id = order.spec.task_id
        since = self.outbox.last_seq
        if task_id in self.tasks:
            return TaskResult(task_id, False, "ERROR", error=f"{self.node.hostname}: task already running")
        try:
            ref = (
                await self._executor()
                .proxy()
                .launch(order.spec, order.control_port, self.outbox, order.controllable)
            )
            held = self.tasks[task_id] = _Held(order, ref)
            pid = await asyncio.wait_for(
                ref.proxy().start_process(startup_timeout), startup_timeout + _MARGIN
            )
        except TaskStartError as exc:
            self._forget(task_id)
            return TaskResult(
                task_id, False, "ERROR", error=str(exc), port_in_use=isinstance(exc, PortInUseError)
            )
        except TimeoutError:
            self._forget(task_id)
            return TaskResult(task_id, False, "ERROR", error=f"did not start within {startup_timeout:g}s")
        held.pid = pid
        held.start_time = process_start_time(pid) if order.controllable else None
        return TaskResult(task_id, True, "STANDBY", pid=pid, since_seq=since)

    async def transition(
        self, orders: Sequence[TransitionOrder], common: dict[str, str], timeout: float
    ) -> list[TaskResult]:
        def one(order: TransitionOrder) -> Any:
            return self._transition_one(order, {**common, **order.arguments}, timeout)

        results = await _in_chunks(orders, one)
        if any(not self.tasks[r.task_id].order.controllable for r in results if r.task_id in self.tasks):
            self._save()  # basic tasks' pids come and go with START and STOP
        return results

    async def _transition_one(
        self, order: TransitionOrder, arguments: dict[str, str], timeout: float
    ) -> TaskResult:
        held = self.tasks.get(order.task_id)
        if held is None:
            return TaskResult(order.task_id, False, "ERROR", error=f"{self.node.hostname}: no such task here")
        since = self.outbox.last_seq
        try:
            state = await asyncio.wait_for(
                held.ref.proxy().transition(order.src_state, order.event, arguments, timeout),
                timeout + _MARGIN,
            )
        except TaskTransitionError as exc:
            held.state = "ERROR"
            return TaskResult(order.task_id, False, "ERROR", held.pid, f"{order.event}: {exc}", since)
        except TimeoutError:
            error = f"{order.event}: no answer within {timeout:g}s"
            return TaskResult(order.task_id, False, "ERROR", held.pid, error, since)
        held.state = state
        if not held.order.controllable:
            held.pid = await held.ref.proxy().current_pid()
            held.start_time = process_start_time(held.pid) if held.pid else None
        if state == "ERROR":
            return TaskResult(
                order.task_id, False, state, held.pid, f"{order.event}: task went to ERROR", since
            )
        return TaskResult(order.task_id, True, state, held.pid, since_seq=since)

    async def kill(self, task_ids: Sequence[str]) -> list[TaskResult]:
        results = await _in_chunks(task_ids, self._kill_one)
        self._save()
        return results

    async def _kill_one(self, task_id: str) -> TaskResult:
        held = self.tasks.get(task_id)
        if held is None:
            return TaskResult(task_id, True, "DONE")  # idempotent: nothing of it runs here
        error = ""
        try:
            info = await held.ref.proxy().kill()
        except Exception as exc:  # the process actor may already be gone; stopping it cleans up
            info, error = None, f"kill: {exc}"
        self._forget(task_id)
        if info is not None and not info.clean and held.state != "DONE":
            error = error or f"process {info.describe()}"
        return TaskResult(task_id, True, "DONE", error=error)

    def _forget(self, task_id: str) -> None:
        if self.tasks.pop(task_id, None) is not None:
            self._executor().tell(ForgetProcess(task_id))

    async def run_hook(self, order: LaunchOrder, timeout: float) -> HookOutcome:
        """Run a hook task (not controllable) to its end; killed if it outlives `timeout` (> 0)."""
        # Not controllable: the executor starts a BasicProcessActor, which runs a task to its end.
        ref = cast(
            "AsyncActorRef[BasicProcessActor]",
            await self._executor().proxy().launch(order.spec, None, None, False),
        )
        try:
            info, tail = await ref.call(BasicProcessActor.run_once, timeout)
        finally:
            self._executor().tell(ForgetProcess(order.spec.task_id))
        return HookOutcome(None if info is None else info.returncode, tuple(tail))

    def status(self) -> list[TaskStatus]:
        return [
            TaskStatus(
                task_id,
                held.order.spec.name,
                held.pid,
                held.order.control_port or 0,
                held.state,
                held.alive,
                held.order.controllable,
            )
            for task_id, held in self.tasks.items()
        ]

    def noticed(self, message: Any) -> None:
        """Keep the task table true to what the process actors report."""
        held = self.tasks.get(getattr(message, "task_id", ""))
        if held is None:
            return
        if isinstance(message, ProcessExited) and held.order.controllable:
            held.alive = False
            held.state = "DONE" if message.expected else "ERROR"
        elif isinstance(message, BasicTaskTerminated) and not message.exit.clean:
            held.state = "ERROR"

    # -- the state file: what this node runs, for the next executor ------------------------------

    def _save(self) -> None:
        if self.state_file is None:
            return
        entries = [
            {
                "task_id": task_id,
                "name": held.order.spec.name,
                "command": held.order.spec.command,
                "log_path": str(held.order.spec.log_path or ""),
                "pid": held.pid,
                "start_time": held.start_time,
                "control_port": held.order.control_port,
                "controllable": held.order.controllable,
                "state": held.state,
            }
            for task_id, held in self.tasks.items()
        ]
        temporary = self.state_file.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"hostname": self.node.hostname, "tasks": entries}, handle)
        os.replace(temporary, self.state_file)

    async def _adopt_from(self, path: Path) -> None:
        try:
            saved = json.loads(await asyncio.to_thread(path.read_text))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error(
                "%s: cannot read the task state file %s (%s): adopting nothing", self.node.hostname, path, exc
            )
            return
        for entry in saved.get("tasks", []):
            await self._adopt(entry)
        self._save()

    async def _adopt(self, entry: dict[str, Any]) -> None:
        task_id, pid = entry["task_id"], int(entry["pid"])
        spec = LaunchSpec(
            task_id=task_id,
            name=entry["name"],
            command=entry.get("command", ""),
            log_path=Path(entry["log_path"]) if entry.get("log_path") else None,
        )
        order = LaunchOrder(spec, entry.get("control_port"), bool(entry["controllable"]))
        alive = pid > 0 and process_start_time(pid) == entry.get("start_time")
        if not alive and (order.controllable or pid > 0):
            # It ended while no executor watched it: report it as a death the core will see.
            log.warning(
                "%s: task %s (pid %d) ended while no executor was running", self.node.hostname, task_id, pid
            )
            self.outbox.tell(ProcessExited(task_id, _VANISHED, expected=False))
            return
        process = TaskProcess.adopt(spec, pid) if alive else None
        ref = await self._executor().proxy().launch(spec, order.control_port, self.outbox, order.controllable)
        held = self.tasks[task_id] = _Held(
            order, ref, pid, entry.get("start_time"), entry.get("state", "STANDBY")
        )
        try:
            held.state = await ref.proxy().adopt(process, held.state, 5.0)
        except Exception as exc:
            log.warning(
                "%s: task %s adopted but not answering over OCC: %s", self.node.hostname, task_id, exc
            )
        log.info("%s: adopted task %s (pid %d, %s)", self.node.hostname, task_id, pid, held.state)


class _ReportingOutbox(EventOutbox):
    """The outbox of an agent: it also keeps the agent's task table up to date."""

    def __init__(self, agent: NodeAgent) -> None:
        super().__init__()
        self.agent = agent

    def tell(self, message: Any) -> None:
        self.agent.noticed(message)
        super().tell(message)


async def _in_chunks(items: Sequence[Any], call: Any) -> list[Any]:
    """`call` for every item concurrently, started in chunks so the loop keeps breathing."""
    futures: list[asyncio.Future[Any]] = []
    for start in range(0, len(items), _CHUNK):
        if start:
            await asyncio.sleep(0)
        futures.extend(asyncio.ensure_future(call(item)) for item in items[start : start + _CHUNK])
    return list(await asyncio.gather(*futures))
