"""The environment actor: one environment's state machine, its role tree and its transitions.

Its mailbox is the environment's serialisation point: one transition at a time, and task deaths or
device events that arrive meanwhile are handled after the running transition, in order. Each
transition fans out to the task actors concurrently under one deadline; tasks that miss it are
reported by name, never waited on forever. Around the tasks' step, a transition passes its hook
trigger points (`before_<EVENT>`, `leave_<STATE>`, `enter_<STATE>`, `after_<EVENT>`; see
`actors.hooks`). A failed transition sends the environment to ERROR (GO_ERROR) and raises a
`TransitionError` carrying every task's error and the critical hook failures.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from actors.gc_policy import release_long_lived, settle_long_lived
from actors.hooks import HookEngine, HookError, HookPlan, HookTaskLauncher
from actors.messages import TaskDeviceEvent, TaskDied
from actors.role import RoleActor
from actors.runtime import AsyncActorRef, AsyncioActor
from actors.task import TaskOutcome
from aliecs.cluster.placement import PlacementRequest
from aliecs.cluster.ports import PortExhaustedError, parse_port_list
from aliecs.cluster.scheduler_interface import (
    ChannelRequest,
    DeployRequest,
    Placement,
    PlacementFailure,
    answer,
)
from aliecs.durations import parse_duration
from aliecs.environment import fsm as states
from aliecs.environment import subtrees
from aliecs.environment.fsm import EnvironmentStateMachine, normalize_event
from aliecs.environment.journal import Journal
from aliecs.environment.runnumber import RunNumberStore
from aliecs.environment.timeouts import DEFAULT_STARTUP_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_TIMEOUTS
from aliecs.errors import InvalidTransitionError, ModifyError, RestartNeededError, TaskError, TransitionError
from aliecs.events import (
    DONE_ERROR,
    DONE_OK,
    ONGOING,
    STARTED,
    STEP_FINISHED,
    STEP_STARTING,
    EnvironmentEvent,
    EventBus,
    RunEvent,
)
from aliecs.executor.link import ExecutorLink
from aliecs.executor.orders import LaunchOrder, TaskResult, TaskStatus, TransitionOrder
from aliecs.executor.process import LaunchSpec
from aliecs.integration import Plugin, builtin_plugins
from aliecs.model import (
    EnvironmentRecord,
    ModifyResult,
    RoleRecord,
    TaskCommand,
    TaskRecord,
    TransitionResult,
)
from aliecs.statedir import task_log_path
from aliecs.workflow.channels import (
    Endpoint,
    bind_channels,
    channel_keys,
    effective_endpoint,
    endpoint_keys,
    resolve_target,
)
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.template import Channel, Role, Workflow

if TYPE_CHECKING:
    from actors.local_cluster import LocalClusterActor
    from actors.proxies import EnvironmentProxy  # noqa: F401 (named in the actor's base class)
    from actors.task import TaskActor

log = logging.getLogger(__name__)

# Grace on top of a deadline before the environment stops waiting for a task actor's answer.
_FAN_OUT_MARGIN = 5.0
# Launches of one task again on another control port when its port was taken on the node.
_PORT_RETRIES = 3
# Task entries let go of per loop iteration when a destroyed environment is dropped.
_DROP_SLICE = 500


@dataclass
class _TaskEntry:
    role: Role
    record: TaskRecord
    ref: AsyncActorRef[TaskActor]
    binds: list[Channel] = field(default_factory=list)
    placement: Placement | None = None

    def error(self, message: str) -> TaskError:
        return TaskError(
            self.record.id, self.record.name, self.record.host or "-", message, self.record.critical
        )


def new_task_id() -> str:
    return uuid.uuid4().hex[:20]


class EnvironmentActor(AsyncioActor["EnvironmentProxy"]):
    def __init__(
        self,
        record: EnvironmentRecord,
        workflow: Workflow,
        scheduler: AsyncActorRef[LocalClusterActor],
        run_numbers: RunNumberStore,
        log_dir: Path,
        bus: EventBus,
        plugins: Mapping[str, Plugin] | None = None,
        journal: Journal | None = None,
    ) -> None:
        super().__init__()
        self.journal = journal
        self.record = record
        self.bus = bus
        self.workflow = workflow
        self.scheduler = scheduler
        self.run_numbers = run_numbers
        self.log_dir = log_dir
        self.fsm = EnvironmentStateMachine()
        self.root: AsyncActorRef[RoleActor] | None = None
        self.entries: dict[str, _TaskEntry] = {}
        # Role actors by path (to tell an excluded subtree's parent to leave it out of its aggregate).
        self.role_refs: dict[str, Any] = {}
        # Excluded subtrees: role path -> why it stays excluded ("" when excluded on request).
        self.excluded: dict[str, str] = record.excluded
        self.start_count = 0
        self.end_of_stream: set[str] = set()
        self.run_active = False
        self.steps: dict[str, Callable[[], Awaitable[list[TaskError]]]] = {
            states.DEPLOY: self._deploy,
            states.CONFIGURE: self._configure,
            states.START_ACTIVITY: self._start_activity,
            states.STOP_ACTIVITY: self._stop_activity,
            states.RESET: self._reset,
            states.EXIT: self._exit,
            states.GO_ERROR: self._go_error,
            states.RECOVER: self._recover,
        }
        # Built-in steps of `before_<EVENT>`, between its negative and non-negative hook weights.
        self.preparations: dict[str, Callable[[], Awaitable[None]]] = {
            states.START_ACTIVITY: self._begin_run,
        }
        self.hooks = HookEngine(
            HookPlan(workflow.root),
            record.id,
            bus,
            builtin_plugins() if plugins is None else plugins,
            HookTaskLauncher(scheduler, self._launch_spec),
            self._runtime_vars,
            self._announce_step,
        )

    # -- construction ----------------------------------------------------------------------------

    async def build(self, task_ids: list[str] | None = None) -> None:
        """Create the role tree's actors (no process is started before DEPLOY). `task_ids`, in
        role-tree order, gives the tasks the ids they had (restoring from the journal)."""
        root_spec = self.workflow.root
        self.record.root = RoleRecord(name=root_spec.name, path=root_spec.path)
        self.root = self.start_child(
            RoleActor, root_spec, self.record.root, self.actor_ref, None, self.bus, self.record.id
        )
        ids = iter(task_ids) if task_ids is not None else None
        next_id = new_task_id if ids is None else (lambda: next(ids))
        for role, task_record, ref in await self.root.proxy().build(next_id):
            self.entries[task_record.id] = _TaskEntry(role, task_record, ref)
            self.record.tasks[task_record.id] = task_record
        self.role_refs = await self.root.proxy().role_refs()
        settle_long_lived()

    # -- public transitions ----------------------------------------------------------------------

    async def transition(self, event: str) -> TransitionResult:
        return await self._run(normalize_event(event))

    async def destroy(self, allow_running: bool = True) -> None:
        """Bring the environment down (STOP, RESET, EXIT as needed); its processes are gone after."""
        if self.fsm.state == states.RUNNING and not allow_running:
            raise InvalidTransitionError(self.record.id, "DESTROY", states.RUNNING, ["STOP_ACTIVITY"])
        try:
            for event, from_state in (
                (states.STOP_ACTIVITY, states.RUNNING),
                (states.RESET, states.CONFIGURED),
                (states.EXIT, None),
            ):
                if (from_state is None or self.fsm.state == from_state) and self.fsm.can(event):
                    await self._run(event)
        except TransitionError as exc:
            log.warning("environment %s: orderly teardown failed, killing its tasks: %s", self.record.id, exc)
        finally:
            hook_errors: list[HookError] = []
            if self.fsm.state != states.DONE:  # EXIT did not run: the teardown leaves this state
                hook_errors += await self.hooks.fire(f"leave_{self.fsm.state}")
            await self._kill_all()  # DESTROY hooks of every weight run after the release, as in the original
            hook_errors += await self.hooks.fire("DESTROY")
            hook_errors += await self.hooks.fire("after_DESTROY")
            await self.hooks.cancel_pending()
            for error in hook_errors:
                log.warning("environment %s: teardown: %s", self.record.id, error)
            if self.fsm.state != states.DONE:
                self.fsm.force(states.DONE)
            self.record.state = states.DONE
            self.record.run_number = 0
            release_long_lived()
            if self.journal is not None:
                await asyncio.to_thread(self.journal.remove, self.record.id)

    async def drop_tasks(self) -> None:
        """Let go of a destroyed environment's per-task objects a slice at a time (`actors.gc_policy`).

        Task refs, mailboxes and entries hold no cycles of their own: they are garbage only because
        the environment actor that holds them is in cycles, so left to the collector they are all
        freed in the one full collection that follows, stalling the loop (~170 ms at 10,000 tasks).
        Dropped here, reference counting frees each slice at once, between which the loop runs.
        """
        ids = list(self.entries)
        for start in range(0, len(ids), _DROP_SLICE):
            for task_id in ids[start : start + _DROP_SLICE]:
                del self.entries[task_id]
            await asyncio.sleep(0)

    # -- the transition engine -------------------------------------------------------------------

    async def _run(self, event: str) -> TransitionResult:
        if not self.fsm.can(event):
            raise InvalidTransitionError(self.record.id, event, self.fsm.state, self.fsm.allowed_events())
        from_state = self.fsm.state
        loop = asyncio.get_running_loop()
        started_ms = int(time.time() * 1000)
        began = loop.time()
        self.record.current_transition = event
        self._announce(event, STARTED, message="transition starting")
        # GO_ERROR and EXIT always complete: their failures (tasks, hooks) are only warnings.
        tolerant = event in (states.GO_ERROR, states.EXIT)
        hook_errors: list[HookError] = []
        errors: list[TaskError] = []

        async def fire(trigger: str, builtin: Callable[[], Awaitable[None]] | None = None) -> str:
            reason = await self._fire(trigger, hook_errors, builtin)
            return "" if tolerant else reason

        try:
            reason = await fire(f"before_{event}", self.preparations.get(event))
            reason = reason or await fire(f"leave_{from_state}")
            step = ""
            if not reason:  # the tasks' transition closes leave_<STATE>, after all its hooks
                step = f"tasks_{event}"
                self._announce_step(step, False, "")
                try:
                    errors = await self.steps[event]()
                except TemplateError as exc:
                    reason = str(exc)
                failed = reason or "; ".join(str(error) for error in errors if error.critical)
                if failed and not tolerant:
                    self._announce_step(step, True, failed)
                    step = ""
            failures = [error for error in errors if error.critical]
            if tolerant or not (failures or reason):
                self.fsm.fire(event)
                self.record.state = self.fsm.state
                if step:  # finished in the state the tasks reached, as the original says it
                    self._announce_step(step, True, "")
                if event == states.DEPLOY:
                    settle_long_lived()
                # Failures from here on leave the state changed, but still fail the transition.
                reason = await fire(f"enter_{self.fsm.state}") or await fire(f"after_{event}")
                if event in (states.STOP_ACTIVITY, states.GO_ERROR):
                    # As the original: the run number stays until the after_ hooks (end-of-run calls
                    # to DCS, trigger, Bookkeeping) have seen it.
                    self.record.run_number = 0
            if (failures or reason) and not tolerant:
                self.record.error = reason or str(failures[0])
                self._announce(event, DONE_ERROR, error=self.record.error)
                await self._enter_error()
                raise TransitionError(self.record.id, event, self.fsm.state, errors, reason)
        finally:
            self.record.current_transition = ""
            await self._persist()
        self._announce(event, DONE_OK, message="transition completed successfully")
        if self.root is not None:
            await self.root.proxy().settle()
        result = TransitionResult(
            event=event,
            from_state=from_state,
            to_state=self.fsm.state,
            started_ms=started_ms,
            duration_s=loop.time() - began,
            run_number=self.record.run_number,
            warnings=(*(str(error) for error in errors), *(str(error) for error in hook_errors)),
        )
        self.record.history.append(result)
        return result

    async def _fire(
        self,
        trigger: str,
        collected: list[HookError],
        builtin: Callable[[], Awaitable[None]] | None = None,
    ) -> str:
        """Fire one trigger point around its built-in step; the critical failures as text ("" if
        none). Every hook error is added to `collected` (non-critical ones end up as warnings)."""
        errors = await self.hooks.fire(trigger, builtin)
        collected += errors
        return "; ".join(str(error) for error in errors if error.critical)

    def _announce_step(self, trigger: str, finished: bool, error: str) -> None:
        """A step of the running transition starts or finishes (`transition_step` = the trigger
        point, or `tasks_<EVENT>`), as the original says it: ONGOING, or DONE_ERROR if it failed."""
        self.bus.publish(
            EnvironmentEvent(
                environment_id=self.record.id,
                state=self.fsm.state,
                transition=self.record.current_transition,
                transition_step=trigger,
                transition_status=DONE_ERROR if error else ONGOING,
                run_number=self.record.run_number,
                error=error,
                message=STEP_FINISHED if finished else STEP_STARTING,
            )
        )

    def _runtime_vars(self) -> dict[str, str]:
        """Variables that hooks see on top of their role's (the run number exists only during a run)."""
        number = str(self.record.run_number) if self.record.run_number else ""
        record = self.record
        # The run's times and the last run number: integration plugins pass them on (EOR calls run
        # after the tasks' STOP, when `run_number` is already cleared here).
        times = {
            "last_run_number": str(record.last_run_number) if record.last_run_number else "",
            "run_start_time_ms": str(record.run_start_time_ms) if record.run_start_time_ms else "",
            "run_end_time_ms": str(record.run_end_time_ms) if record.run_end_time_ms else "",
        }
        return {"run_number": number, "runNumber": number, **times}

    def _announce(self, transition: str, status: str, message: str = "", error: str = "") -> None:
        self.bus.publish(
            EnvironmentEvent(
                environment_id=self.record.id,
                state=self.fsm.state,
                transition=transition,
                transition_status=status,
                run_number=self.record.run_number,
                message=message,
                error=error,
            )
        )
        if transition in (states.START_ACTIVITY, states.STOP_ACTIVITY, states.GO_ERROR) and status != STARTED:
            self._run_event(transition, status, error)

    def _run_event(self, transition: str, status: str, error: str = "") -> None:
        """Run events mark the start and end of start-of-run and of end-of-run (their timestamps are
        the SOR/EOR times); none is sent when no run is active."""
        if not self.run_active:
            return
        now_ms = int(time.time() * 1000)
        record = self.record
        if transition == states.START_ACTIVITY and status == DONE_OK:
            record.run_start_completion_time_ms = now_ms
        elif transition != states.START_ACTIVITY:  # STOP_ACTIVITY or GO_ERROR end the run
            record.run_end_time_ms = record.run_end_time_ms or now_ms  # set once, at the first of them
            if status != STARTED:
                record.run_end_completion_time_ms = now_ms
        run = record.run_number or record.last_run_number
        self.bus.publish(RunEvent(record.id, run, self.fsm.state, transition, status, error))
        if transition != states.START_ACTIVITY and status == DONE_OK:
            self.run_active = False

    async def _enter_error(self) -> None:
        """GO_ERROR after a failed transition; never raises (its task and hook errors are only logged)."""
        if not self.fsm.can(states.GO_ERROR):
            return
        hook_errors: list[HookError] = []
        failed_transition, self.record.current_transition = self.record.current_transition, states.GO_ERROR
        try:
            await self._fire(f"before_{states.GO_ERROR}", hook_errors)
            await self._fire(f"leave_{self.fsm.state}", hook_errors)
            errors: list[Any] = await self._go_error()
            self.fsm.fire(states.GO_ERROR)
            self.record.state = self.fsm.state
            await self._fire(f"enter_{self.fsm.state}", hook_errors)
            await self._fire(f"after_{states.GO_ERROR}", hook_errors)
            self.record.run_number = 0  # after the after_ hooks, as in `_run`
        finally:
            self.record.current_transition = failed_transition
        for error in [*errors, *hook_errors]:
            log.warning("environment %s: GO_ERROR: %s", self.record.id, error)
        self._announce(states.GO_ERROR, DONE_OK, message="environment entered ERROR", error=self.record.error)
        if self.root is not None:
            await self.root.proxy().settle()
        await self._persist()

    def _timeout(self, event: str) -> float:
        stack = self.workflow.root.stack
        key = f"{event.lower()}_timeout"
        if key in stack:
            try:
                return parse_duration(stack[key])
            except ValueError as exc:
                raise TemplateError(f"variable {key}: {exc}", file=self.workflow.source) from exc
        return DEFAULT_TIMEOUTS.get(event, DEFAULT_TIMEOUT)

    async def _per_node(
        self,
        entries: list[_TaskEntry],
        send: Callable[[ExecutorLink, list[_TaskEntry]], Awaitable[list[TaskResult]]],
        apply: Callable[[_TaskEntry, TaskResult], Awaitable[TaskOutcome]],
        timeout: float,
        what: str,
    ) -> list[TaskError]:
        """One request per node (`send` with that node's entries), all nodes concurrently under one
        deadline; each task's answer is handed to its actor by `apply`. A node whose executor does not
        answer in time, or cannot be reached, fails its tasks naming the node."""
        if not entries:
            return []
        groups: dict[ExecutorLink, list[_TaskEntry]] = {}
        for entry in entries:
            assert entry.placement is not None
            groups.setdefault(entry.placement.executor, []).append(entry)
        futures = {asyncio.ensure_future(send(link, group)): (link, group) for link, group in groups.items()}
        _done, pending = await asyncio.wait(futures, timeout=timeout + _FAN_OUT_MARGIN)
        applied: list[tuple[_TaskEntry, Awaitable[TaskOutcome]]] = []
        for future, (link, group) in futures.items():
            if future in pending:
                future.cancel()
                reason = f"{what}: no answer from the executor of node {link.hostname} within {timeout:g}s"
            elif future.exception() is not None:
                reason = f"{what}: {future.exception()}"
            else:
                answers = {result.task_id: result for result in future.result()}
                for entry in group:
                    answer = answers.get(entry.record.id)
                    if answer is None:
                        answer = TaskResult(
                            entry.record.id, False, "ERROR", error=f"{what}: no answer for the task"
                        )
                    applied.append((entry, apply(entry, answer)))
                continue
            applied.extend((entry, entry.ref.proxy().failed(reason)) for entry in group)
        outcomes = await asyncio.gather(*(outcome for _entry, outcome in applied))
        return [
            entry.error(outcome.error)
            for (entry, _), outcome in zip(applied, outcomes, strict=True)
            if not outcome.ok
        ]

    def _transition_tasks(
        self,
        src: str,
        event: str,
        common: dict[str, str],
        timeout: float,
        per_task: Mapping[str, dict[str, str]] | None = None,
        targets: list[_TaskEntry] | None = None,
    ) -> Awaitable[list[TaskError]]:
        """Send `event` to the tasks in `src` (and to critical tasks whatever their state, so that a
        critical task in the wrong state fails the transition, naming it)."""
        if targets is None:
            targets = [
                e
                for e in self.entries.values()
                if (e.record.state == src or e.record.critical) and not e.record.excluded
            ]
        errors: list[TaskError] = []
        ready = []
        for entry in targets:
            if entry.placement is None or entry.record.status != "ACTIVE":
                errors.append(entry.error(entry.record.error or "task is not running"))
            elif entry.record.state != src:
                errors.append(entry.error(f"cannot {event}: task is {entry.record.state}, not {src}"))
            else:
                ready.append(entry)
        arguments = per_task or {}

        def send(link: ExecutorLink, group: list[_TaskEntry]) -> Awaitable[list[TaskResult]]:
            orders = [
                TransitionOrder(entry.record.id, src, event, arguments.get(entry.record.id, {}))
                for entry in group
            ]
            return link.transition(orders, common, timeout)

        def apply(entry: _TaskEntry, result: TaskResult) -> Awaitable[TaskOutcome]:
            return entry.ref.proxy().transitioned(result)  # type: ignore[no-any-return]

        async def run() -> list[TaskError]:
            return errors + await self._per_node(ready, send, apply, timeout, event)

        return run()

    # -- steps -----------------------------------------------------------------------------------

    def _task_stack(self, role: Role, task_id: str, hostname: str) -> dict[str, str]:
        assert role.task is not None
        task_class = role.task.task_class
        special = {
            "task_id": task_id,
            "task_name": role.path,
            "task_class_name": task_class.identifier,
            "task_hostname": hostname,
            "environment_id": self.record.id,
            "task_parent_role": role.parent.path if role.parent else "",
        }
        return task_class.stack_for(role.stack, special)

    def _launch_spec(self, role: Role, task_id: str, placement: Placement) -> LaunchSpec:
        """How to start a task (data-flow or hook) of `role` on the node it was placed on."""
        assert role.task is not None
        task_class = role.task.task_class
        stack = self._task_stack(role, task_id, placement.hostname)
        command = task_class.render_command(stack, role.path)
        env = {"O2_ROLE": placement.hostname, "O2_SYSTEM": "FLP", **command.env}
        arguments = command.arguments
        if placement.control_port is not None:
            env["OCC_CONTROL_PORT"] = str(placement.control_port)
            if task_class.control_mode == "fairmq":
                arguments = (*arguments, "--control-port", str(placement.control_port))
        return LaunchSpec(
            task_id=task_id,
            name=role.path,
            command=command.value,
            arguments=arguments,
            shell=command.shell,
            env=env,
            log_path=task_log_path(self.log_dir, self.record.id, role.path, task_id),
        )

    async def _deploy(self, entries: list[_TaskEntry] | None = None) -> list[TaskError]:
        targets = list(self.entries.values()) if entries is None else entries
        errors: list[TaskError] = []
        requests = []
        for entry in targets:
            assert entry.role.task is not None
            task_class = entry.role.task.task_class
            try:
                entry.binds = bind_channels(entry.role, self._task_stack(entry.role, entry.record.id, ""))
            except TemplateError as exc:
                errors.append(entry.error(str(exc)))
                continue
            try:  # cached per descriptor: expanded once however many tasks load it
                static_ports = parse_port_list(task_class.ports, f"task class {task_class.identifier}")
            except ValueError as exc:
                errors.append(entry.error(str(exc)))
                continue
            requests.append(
                DeployRequest(
                    PlacementRequest(
                        entry.record.id,
                        entry.record.name,
                        task_class.wants,
                        {**task_class.constraints, **entry.role.constraints},
                        static_ports=static_ports,
                    ),
                    channels=tuple(ChannelRequest(ch.name, ch.addressing) for ch in entry.binds),
                    controllable=task_class.control_mode != "basic",
                )
            )
        placements = await answer(self.scheduler.proxy().place(requests))
        to_start: list[tuple[_TaskEntry, LaunchSpec]] = []
        for placement in placements:
            entry = self.entries[placement.task_id]
            if isinstance(placement, PlacementFailure):
                entry.ref.proxy().mark_undeployable(placement.reason)
                errors.append(entry.error(f"undeployable: {placement.reason}"))
                continue
            entry.placement = placement
            entry.record.host = placement.hostname
            try:
                spec = self._launch_spec(entry.role, entry.record.id, placement)
            except TemplateError as exc:
                errors.append(entry.error(str(exc)))
                continue
            to_start.append((entry, spec))
            entry.record.command = TaskCommand(spec.command, spec.arguments, spec.env_list(), spec.shell)
        if any(error.critical for error in errors):
            # Fail fast: do not start anything when a critical task cannot run at all.
            await self.scheduler.proxy().release([entry.record.id for entry in targets])
            return errors
        timeout = self._timeout(states.DEPLOY)
        startup = min(
            timeout,
            parse_duration(self.workflow.root.stack.get("startup_timeout", str(DEFAULT_STARTUP_TIMEOUT))),
        )
        specs = {entry.record.id: spec for entry, spec in to_start}
        entries = [entry for entry, _ in to_start]
        # Told where they run before anything starts: a task dying at once is then heard of.
        await asyncio.gather(
            *(
                # placement: set for every entry of to_start above
                entry.ref.proxy().placed(
                    cast("Placement", entry.placement), str(specs[entry.record.id].log_path or "")
                )
                for entry in entries
            )
        )

        def launch(link: ExecutorLink, group: list[_TaskEntry]) -> Awaitable[list[TaskResult]]:
            orders = []
            for entry in group:
                assert entry.placement is not None
                controllable = entry.placement.control_port is not None
                orders.append(LaunchOrder(specs[entry.record.id], entry.placement.control_port, controllable))
            return link.launch(orders, startup)

        async def send(link: ExecutorLink, group: list[_TaskEntry]) -> list[TaskResult]:
            results = await launch(link, group)
            for _attempt in range(_PORT_RETRIES):
                taken = [self.entries[result.task_id] for result in results if result.port_in_use]
                if not taken:
                    break
                for entry in list(taken):
                    try:
                        await self._move_control_port(entry, specs)
                    except PortExhaustedError:  # nowhere else to go: its failure stands
                        taken.remove(entry)
                if not taken:
                    break
                again = {result.task_id: result for result in await launch(link, taken)}
                results = [again.get(result.task_id, result) for result in results]
            return results

        def apply(entry: _TaskEntry, result: TaskResult) -> Awaitable[TaskOutcome]:
            return entry.ref.proxy().deployed(result)  # type: ignore[no-any-return]

        errors += await self._per_node(entries, send, apply, timeout, "DEPLOY")
        return errors

    async def _move_control_port(self, entry: _TaskEntry, specs: dict[str, LaunchSpec]) -> None:
        """Give a task whose control port was taken on its node another one, before launching it again."""
        assert entry.placement is not None
        old = entry.placement.control_port
        entry.placement = await self.scheduler.proxy().move_control_port(entry.placement)
        spec = specs[entry.record.id] = self._launch_spec(entry.role, entry.record.id, entry.placement)
        entry.record.command = TaskCommand(spec.command, spec.arguments, spec.env_list(), spec.shell)
        await entry.ref.proxy().placed(entry.placement, str(spec.log_path or ""))
        log.warning(
            "environment %s: task %s: control port %s was taken on %s; launching it again on port %s",
            self.record.id,
            entry.record.name,
            old,
            entry.placement.hostname,
            entry.placement.control_port,
        )

    async def _configure(self) -> list[TaskError]:
        included = [entry for entry in self.entries.values() if not entry.record.excluded]
        arguments, errors = self._configure_arguments(included)
        if any(error.critical for error in errors):
            return errors
        return errors + await self._transition_tasks(
            "STANDBY", "CONFIGURE", {}, self._timeout(states.CONFIGURE), per_task=arguments
        )

    def _configure_arguments(
        self, entries: list[_TaskEntry], keep: bool = True
    ) -> tuple[dict[str, dict[str, str]], list[TaskError]]:
        """What CONFIGURE sends each of `entries`: its channels (connect targets resolved against
        every placed task of the environment, excluded ones too: they keep running) and properties.
        `keep` records them as the tasks' properties (they are about to be sent)."""
        endpoints = {
            key: effective_endpoint(channel, entry.placement.endpoints[channel.name], entry.placement.address)
            for entry in self.entries.values()
            if entry.placement is not None
            for channel in entry.binds
            if channel.name in entry.placement.endpoints
            for key in endpoint_keys(entry.role.path, channel)
        }
        arguments: dict[str, dict[str, str]] = {}
        errors: list[TaskError] = []
        for entry in entries:
            if entry.placement is None:
                continue
            assert entry.role.task is not None
            args: dict[str, str] = {}
            try:
                for channel in entry.binds:
                    endpoint = effective_endpoint(
                        channel, entry.placement.endpoints[channel.name], entry.placement.address
                    )
                    args.update(channel_keys(channel, endpoint.bind_address, "bind"))
                for channel in entry.role.connect:
                    address = resolve_target(channel, entry.role.path, endpoints)
                    args.update(channel_keys(channel, address, "connect"))
                stack = self._task_stack(entry.role, entry.record.id, entry.placement.hostname)
                args.update(entry.role.task.task_class.render_properties(stack, entry.role.path))
            except TemplateError as exc:
                errors.append(entry.error(str(exc)))
                continue
            args["environment_id"] = self.record.id
            arguments[entry.record.id] = args
            if keep:
                entry.record.properties = args
        return arguments, errors

    def _run_arguments(self, extra: dict[str, str]) -> dict[str, str]:
        number = str(self.record.run_number)
        stack = self.workflow.root.stack
        args = {
            "runNumber": number,
            "run_number": number,
            "environment_id": self.record.id,
            "run_type": stack.get("run_type", ""),
            "runType": stack.get("run_type", ""),
        }
        args.update(extra)
        return args

    async def _begin_run(self) -> None:
        """Built-in step of before_START_ACTIVITY: the run number, which its hooks of weight >= 0 see."""
        now_ms = int(time.time() * 1000)
        self.record.run_number = await self.run_numbers.allocate(self.record.id, now_ms)
        self.record.last_run_number = self.record.run_number
        self.record.run_start_time_ms = now_ms
        self.record.run_start_completion_time_ms = 0
        self.record.run_end_time_ms = self.record.run_end_completion_time_ms = 0
        self.run_active = True
        self._run_event(states.START_ACTIVITY, STARTED)
        self.end_of_stream.clear()

    def _start_arguments(self, count: int) -> dict[str, str]:
        start_ms = str(self.record.run_start_time_ms)
        return self._run_arguments(
            {"cleanup": str(count), "run_start_time_ms": start_ms, "runStartTimeMs": start_ms}
        )

    def _stop_arguments(self) -> dict[str, str]:
        now_ms = str(self.record.run_end_time_ms or int(time.time() * 1000))
        return self._run_arguments({"run_end_time_ms": now_ms, "runEndTimeMs": now_ms})

    async def _start_activity(self) -> list[TaskError]:
        arguments = self._start_arguments(self.start_count)
        self.start_count += 1
        return await self._transition_tasks(
            "CONFIGURED", "START", arguments, self._timeout(states.START_ACTIVITY)
        )

    async def _stop_activity(self) -> list[TaskError]:
        self._run_event(states.STOP_ACTIVITY, STARTED)
        arguments = self._stop_arguments()
        return await self._transition_tasks("RUNNING", "STOP", arguments, self._timeout(states.STOP_ACTIVITY))

    async def _reset(self) -> list[TaskError]:
        return await self._transition_tasks("CONFIGURED", "RESET", {}, self._timeout(states.RESET))

    async def _go_error(self) -> list[TaskError]:
        """Stop whatever is running; errors are reported but never block entering ERROR."""
        running = [
            entry
            for entry in self.entries.values()
            if entry.record.state == "RUNNING" and not entry.record.excluded
        ]
        self._run_event(states.GO_ERROR, STARTED)
        arguments = self._stop_arguments()
        timeout = self._timeout(states.STOP_ACTIVITY)
        errors = await self._transition_tasks("RUNNING", "STOP", arguments, timeout, targets=running)
        return [TaskError(e.task_id, e.name, e.host, e.message, critical=False) for e in errors]

    async def _exit(self) -> list[TaskError]:
        await self._kill_all()
        return []

    async def _kill_all(self) -> None:
        errors = await self._kill(list(self.entries.values()), "kill")
        for error in errors:
            log.error("environment %s: %s", self.record.id, error)
        await self.scheduler.proxy().release(list(self.entries))
        for entry in self.entries.values():
            entry.placement = None

    async def _kill(self, entries: list[_TaskEntry], what: str) -> list[TaskError]:
        """Walk the tasks to DONE and make sure their processes are gone (one batch per node)."""
        placed = [entry for entry in entries if entry.placement is not None]
        for entry in entries:
            if entry.placement is None:
                await entry.ref.proxy().killed(None)

        def send(link: ExecutorLink, group: list[_TaskEntry]) -> Awaitable[list[TaskResult]]:
            return link.kill([entry.record.id for entry in group])

        def apply(entry: _TaskEntry, result: TaskResult) -> Awaitable[TaskOutcome]:
            return entry.ref.proxy().killed(result)  # type: ignore[no-any-return]

        return await self._per_node(placed, send, apply, 30.0, what)

    async def _recover(self) -> list[TaskError]:
        """ERROR -> DEPLOYED: restart dead tasks in place, bring the others back to STANDBY."""
        included = [entry for entry in self.entries.values() if not entry.record.excluded]
        dead = [entry for entry in included if entry.record.status != "ACTIVE"]
        errors: list[TaskError] = []
        if dead:
            await self._kill(dead, "RECOVER (cleanup)")
            await self.scheduler.proxy().release([entry.record.id for entry in dead])
            for entry in dead:
                entry.placement = None
            errors += await self._deploy(dead)
        timeout = self._timeout(states.RECOVER)
        steps = (("RUNNING", "STOP"), ("CONFIGURED", "RESET"), ("ERROR", "RECOVER"))
        for src, event in steps:
            targets = [entry for entry in included if entry.record.state == src]
            errors += await self._transition_tasks(src, event, {}, timeout, targets=targets)
        for entry in included:
            reported = any(error.task_id == entry.record.id for error in errors)
            if entry.record.state != "STANDBY" and entry.record.critical and not reported:
                errors.append(entry.error(f"RECOVER: task is {entry.record.state}, not STANDBY"))
        return errors

    # -- changing the deployed environment in place (see aliecs.environment.subtrees) -------------

    def _is_excluded(self, task_id: str) -> bool:
        entry = self.entries.get(task_id)
        return entry is not None and entry.record.excluded

    def _members(self, path: str) -> list[_TaskEntry]:
        return [entry for entry in self.entries.values() if subtrees.under(entry.role.path, path)]

    def _announce_change(self, operation: str, status: str, message: str, error: str = "") -> None:
        """An in-place change (EXCLUDE, INCLUDE, ...) as an environment event: its transition is the
        operation, and the environment's state does not change."""
        self._announce(operation, status, message=message, error=error)

    async def _mark_excluded(self, role: Role | None, excluded: bool) -> None:
        """Flag the subtree's tasks and make its parent role leave it out of (or count it again in)
        its aggregate."""
        if role is None:
            return
        for entry in self._members(role.path):
            entry.record.excluded = excluded
        if role.parent is not None:
            await self.role_refs[role.parent.path].proxy().exclude_child(role.path, excluded)

    async def exclude(self, path: str, allow_running: bool = False) -> list[str]:
        """Leave the subtree at `path` out of every transition and aggregate; its processes keep
        running. Returns the ids of its tasks."""
        subtrees.check_state(self.record.id, self.fsm.state, "exclude a role")
        role = subtrees.find_role(self.workflow.root, path, self.record.id)
        if role.parent is None:
            raise ModifyError(f"environment {self.record.id}: cannot exclude the root role {role.path}")
        for excluded in self.excluded:
            if subtrees.under(role.path, excluded):
                raise ModifyError(
                    f"environment {self.record.id}: {role.path} is already excluded (by {excluded})"
                )
        members = self._members(role.path)
        if not members:
            raise ModifyError(f"environment {self.record.id}: role {role.path} holds no task to exclude")
        critical = any(entry.record.critical for entry in members)
        subtrees.check_running(self.record.id, self.fsm.state, role.path, critical, allow_running, "exclude")
        for nested in [p for p in self.excluded if subtrees.under(p, role.path)]:
            # Folded into the new, larger subtree: including it later includes them too.
            await self._mark_excluded(self.workflow.root.find(nested), False)
            del self.excluded[nested]
        await self._mark_excluded(role, True)
        self.excluded[role.path] = ""
        assert self.root is not None  # built with the environment
        await self.root.proxy().settle()
        await self._persist()
        self._announce_change("EXCLUDE", DONE_OK, f"excluded {role.path} ({len(members)} tasks)")
        return [entry.record.id for entry in members]

    async def include(self, path: str, allow_running: bool = False) -> list[str]:
        """Bring the excluded subtree at `path` to the environment's state (RESET or STOP as needed,
        CONFIGURE, then START with the current run number when RUNNING) and let it rejoin. If it
        cannot catch up, it stays excluded with the reason (`ModifyError`). Returns its task ids."""
        subtrees.check_state(self.record.id, self.fsm.state, "include a role")
        role = subtrees.find_role(self.workflow.root, path, self.record.id)
        if role.path not in self.excluded:
            known = ", ".join(self.excluded) or "none"
            raise ModifyError(
                f"environment {self.record.id}: {role.path} is not excluded (excluded: {known})"
            )
        members = self._members(role.path)
        critical = any(entry.record.critical for entry in members)
        subtrees.check_running(self.record.id, self.fsm.state, role.path, critical, allow_running, "include")
        self._announce_change("INCLUDE", STARTED, f"including {role.path} ({len(members)} tasks)")
        errors = await self._catch_up(members)
        if errors:
            reason = "; ".join(str(error) for error in errors[:5])
            if len(errors) > 5:
                reason += f"; and {len(errors) - 5} more"
            self.excluded[role.path] = reason
            await self._persist()
            self._announce_change("INCLUDE", DONE_ERROR, f"{role.path} stays excluded", error=reason)
            raise ModifyError(
                f"environment {self.record.id}: {role.path} could not catch up with the environment "
                f"({self.fsm.state}) and stays excluded: {reason}"
            )
        await self._mark_excluded(role, False)
        del self.excluded[role.path]
        assert self.root is not None  # built with the environment
        await self.root.proxy().settle()
        await self._persist()
        self._announce_change("INCLUDE", DONE_OK, f"included {role.path} ({len(members)} tasks)")
        return [entry.record.id for entry in members]

    async def _catch_up(self, members: list[_TaskEntry]) -> list[TaskError]:
        """Bring `members` to the task state that matches the environment's: down to STANDBY first
        (their configuration may be stale), then CONFIGURE and START as the environment is. A task
        that fails a step goes no further; the others go on. Returns every task's error."""
        target = subtrees.TASK_TARGET[self.fsm.state]
        errors: list[TaskError] = []

        def survivors(step_errors: list[TaskError]) -> list[_TaskEntry]:
            errors.extend(step_errors)
            failed = {error.task_id for error in errors}
            return [entry for entry in members if entry.record.id not in failed]

        members = survivors(
            [
                entry.error(f"cannot catch up: {entry.record.error or 'task is not running'}")
                for entry in members
                if entry.placement is None or entry.record.status != "ACTIVE"
            ]
        )
        timeout = self._timeout(states.CONFIGURE)
        down: tuple[tuple[str, str, dict[str, str]], ...] = (
            ("RUNNING", "STOP", self._stop_arguments()),
            ("CONFIGURED", "RESET", {}),
            ("ERROR", "RECOVER", {}),
        )
        for src, event, common in down:
            targets = [entry for entry in members if entry.record.state == src]
            members = survivors(await self._transition_tasks(src, event, common, timeout, targets=targets))
        if target == "STANDBY" or not members:
            return errors
        arguments, configure_errors = self._configure_arguments(members)
        members = survivors(configure_errors)
        members = survivors(
            await self._transition_tasks(
                "STANDBY", "CONFIGURE", {}, timeout, per_task=arguments, targets=members
            )
        )
        if target == "CONFIGURED" or not members:
            return errors
        common = self._start_arguments(max(self.start_count - 1, 0))  # the current run's
        survivors(
            await self._transition_tasks(
                "CONFIGURED", "START", common, self._timeout(states.START_ACTIVITY), targets=members
            )
        )
        return errors

    async def reshape(
        self,
        workflow: Workflow,
        variables: dict[str, str],
        counts: dict[str, int],
        restart: bool = False,
        reconfigure_all: bool = False,
        operation: str = "SET_VARS",
    ) -> ModifyResult:
        """Move to `workflow`, the environment's template expanded again with new `variables` or
        iterator `counts`: deploy and bring up only the tasks it adds, release only those it drops,
        and push the new configuration to the tasks whose CONFIGURE arguments change (now when
        CONFIGURED, at the next CONFIGURE when RUNNING or DEPLOYED). Tasks whose command line would
        change keep their process unless `restart` (then `RestartNeededError` names them and nothing
        changes). A task that cannot catch up is left excluded with the reason (`ModifyError`)."""
        subtrees.check_state(self.record.id, self.fsm.state, f"{operation.lower().replace('_', ' ')}")
        new_roles = {role.path: role for role in workflow.tasks()}
        kept = [
            (entry, new_roles[entry.role.path])
            for entry in self.entries.values()
            if entry.role.path in new_roles
        ]
        removed = [entry for entry in self.entries.values() if entry.role.path not in new_roles]
        to_restart = self._command_changes(kept)
        if to_restart and not restart:
            raise RestartNeededError(self.record.id, sorted(entry.record.name for entry in to_restart))
        self._announce_change(operation, STARTED, f"{operation}: {len(new_roles)} tasks after the change")
        old_paths = subtrees.deployable_paths(self.workflow.root)
        self.workflow = self.record.template = workflow
        self.record.user_vars, self.record.iterator_counts = dict(variables), dict(counts)
        self.hooks.plan = HookPlan(workflow.root)
        for entry, role in kept:
            entry.role = role
        await self._drop(removed, old_paths, subtrees.deployable_paths(workflow.root))
        added = await self._grow(old_paths)
        assert self.root is not None  # built with the environment
        self.role_refs = await self.root.proxy().role_refs()
        for entry in added:  # new roles inside an excluded subtree are deployed but stay out
            entry.record.excluded = any(subtrees.under(entry.role.path, path) for path in self.excluded)
        if to_restart:
            await self._kill(to_restart, "restart")
            await self.scheduler.proxy().release([entry.record.id for entry in to_restart])
        for entry in to_restart:
            entry.placement = None
        fresh = added + to_restart
        errors = await self._deploy(fresh) if fresh else []
        included = [e for e, _ in kept if not e.record.excluded and e not in to_restart]
        stale: list[_TaskEntry] = []
        if self.fsm.state != states.DEPLOYED:
            arguments, _ = self._configure_arguments(included, keep=False)
            stale = [
                e for e in included if reconfigure_all or arguments.get(e.record.id) != e.record.properties
            ]
        failed = {error.task_id for error in errors}
        bring_up = [entry for entry in fresh if entry.record.id not in failed and not entry.record.excluded]
        if self.fsm.state == states.CONFIGURED:
            bring_up += stale
        errors += await self._catch_up(bring_up)
        reason = await self._exclude_failed(errors)
        assert self.root is not None  # built with the environment
        await self.root.proxy().settle()
        await self._persist()
        result = ModifyResult(
            added=tuple(entry.record.id for entry in added),
            removed=tuple(entry.record.id for entry in removed),
            reconfigured=tuple(e.record.id for e in stale if self.fsm.state == states.CONFIGURED),
            restarted=tuple(entry.record.id for entry in to_restart),
            pending=tuple(e.record.id for e in stale if self.fsm.state == states.RUNNING),
        )
        if reason:
            self._announce_change(operation, DONE_ERROR, "tasks that could not catch up are excluded", reason)
            raise ModifyError(
                f"environment {self.record.id}: {operation}: excluded what could not catch up: {reason}"
            )
        self._announce_change(operation, DONE_OK, result.summary())
        return result

    def _command_changes(self, kept: list[tuple[_TaskEntry, Role]]) -> list[_TaskEntry]:
        """The running tasks whose command line (command, arguments, environment) `role` changes."""
        changed = []
        for entry, role in kept:
            if entry.placement is None or entry.record.command is None:
                continue
            try:
                spec = self._launch_spec(role, entry.record.id, entry.placement)
            except TemplateError as exc:
                raise ModifyError(f"environment {self.record.id}: {exc}") from exc
            if TaskCommand(spec.command, spec.arguments, spec.env_list(), spec.shell) != entry.record.command:
                changed.append(entry)
        return changed

    async def _drop(self, removed: list[_TaskEntry], old_paths: set[str], new_paths: set[str]) -> None:
        """Kill and release the tasks the new workflow no longer has, and remove their roles."""
        if not removed:
            return
        for error in await self._kill(removed, "scale down"):
            log.warning("environment %s: %s", self.record.id, error)
        await self.scheduler.proxy().release([entry.record.id for entry in removed])
        for path in sorted(old_paths - new_paths):
            parent = path.rpartition(".")[0]
            if parent in new_paths and parent in self.role_refs:
                await self.role_refs[parent].proxy().remove_child(path)
        for entry in removed:
            del self.entries[entry.record.id]
            del self.record.tasks[entry.record.id]
        for path in [p for p in self.excluded if p not in new_paths]:
            del self.excluded[path]

    async def _grow(self, old_paths: set[str]) -> list[_TaskEntry]:
        """Build the actors of the roles the new workflow adds; returns their tasks (not deployed)."""
        added: list[_TaskEntry] = []
        for role in self.workflow.root.walk():
            parent = role.parent
            if parent is None or role.path in old_paths or parent.path not in old_paths:
                continue
            if role.call is not None or role.is_hook:
                continue
            for child_role, task_record, ref in (
                await self.role_refs[parent.path].proxy().add_child(role, new_task_id)
            ):
                entry = _TaskEntry(child_role, task_record, ref)
                self.entries[task_record.id] = entry
                self.record.tasks[task_record.id] = task_record
                added.append(entry)
        return added

    async def _exclude_failed(self, errors: list[TaskError]) -> str:
        """Exclude each task that failed to come up, with its error; the reasons as text."""
        for error in errors:
            entry = self.entries.get(error.task_id)
            if entry is None or entry.record.excluded:
                continue
            await self._mark_excluded(entry.role, True)
            self.excluded[entry.role.path] = error.message
        return "; ".join(str(error) for error in errors[:5]) + (
            f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
        )

    # -- the journal: surviving a restart of the core ----------------------------------------------

    _RUN_FIELDS = (
        "run_number",
        "last_run_number",
        "run_start_time_ms",
        "run_start_completion_time_ms",
        "run_end_time_ms",
        "run_end_completion_time_ms",
        "created_ms",
    )

    def snapshot(self) -> dict[str, Any]:
        """Where the environment stands, as the journal keeps it (JSON)."""
        tasks = {}
        for task_id, entry in self.entries.items():
            saved: dict[str, Any] = {
                "state": entry.record.state,
                "status": entry.record.status,
                "pid": entry.record.pid,
            }
            if entry.placement is not None:
                placement = entry.placement
                saved["placement"] = {
                    "host": placement.hostname,
                    "address": placement.address,
                    "control_port": placement.control_port,
                    "endpoints": {
                        name: [e.bind_address, e.connect_address] for name, e in placement.endpoints.items()
                    },
                    "log_path": entry.record.log_path,
                }
            tasks[task_id] = saved
        return {
            "state": self.fsm.state,
            "run_active": self.run_active,
            "start_count": self.start_count,
            "task_ids": self._task_ids_in_tree_order(),
            "tasks": tasks,
            "excluded": dict(self.excluded),
            # What the workflow is expanded with now (changed by set_vars and scale).
            "variables": dict(self.record.user_vars),
            "iterator_counts": dict(self.record.iterator_counts),
            **{name: getattr(self.record, name) for name in self._RUN_FIELDS},
        }

    def _task_ids_in_tree_order(self) -> list[str]:
        """Task ids in the order `build` creates the tasks of the current workflow (what `restore`
        expects), whatever order scaling added them in."""
        by_path = {entry.role.path: task_id for task_id, entry in self.entries.items()}
        return [by_path[role.path] for role in self.workflow.tasks() if role.path in by_path]

    async def _persist(self) -> None:
        if self.journal is not None:
            await asyncio.to_thread(self.journal.save, self.record.id, self.snapshot())

    async def restore(self, snapshot: dict[str, Any], running: Mapping[str, TaskStatus]) -> None:
        """Take the environment back after a restart of the core: the role tree with its task ids,
        its state and run, and each task with the process its executor still runs (`running`, by
        task id). A task whose process ended while the core was away is reported dead, which puts
        the environment in ERROR if it is critical."""
        await self.build(snapshot["task_ids"])
        self.fsm.restore(snapshot["state"])
        self.record.state = self.fsm.state
        self.run_active = snapshot["run_active"]
        self.start_count = snapshot["start_count"]
        for name in self._RUN_FIELDS:
            setattr(self.record, name, snapshot[name])
        for task_id, saved in snapshot["tasks"].items():
            entry = self.entries[task_id]
            where = saved.get("placement")
            if where is None:
                continue
            placement = await self.scheduler.proxy().adopt(
                task_id,
                where["host"],
                where["address"],
                where["control_port"],
                {name: Endpoint(bind, connect) for name, (bind, connect) in where["endpoints"].items()},
            )
            entry.placement = placement
            entry.record.host = placement.hostname
            assert entry.role.task is not None
            entry.binds = bind_channels(entry.role, self._task_stack(entry.role, task_id, ""))
            await entry.ref.proxy().placed(placement, where["log_path"])
            spec = self._launch_spec(entry.role, task_id, placement)  # as it was started: same inputs
            entry.record.command = TaskCommand(spec.command, spec.arguments, spec.env_list(), spec.shell)
            status = running.get(task_id)
            if status is not None and status.alive:
                await entry.ref.proxy().adopted(status.pid, status.state)
            elif saved["status"] == "ACTIVE":
                await entry.ref.proxy().vanished(
                    f"process (pid {saved['pid']}) ended while the core was away"
                )
        for path in snapshot.get("excluded", {}):
            await self._mark_excluded(self.workflow.root.find(path), True)
        self.excluded.update(snapshot.get("excluded", {}))
        if self.fsm.state in (states.CONFIGURED, states.RUNNING):
            # What their last CONFIGURE carried (the same inputs give the same arguments): a later
            # set_vars then reconfigures only the tasks whose arguments really change.
            self._configure_arguments([e for e in self.entries.values() if not e.record.excluded])
        settle_long_lived()
        assert self.root is not None  # built above
        await self.root.proxy().settle()
        log.info(
            "environment %s restored in %s (run %s)",
            self.record.id,
            self.record.state,
            self.record.run_number,
        )

    # -- reactions to what tasks do on their own -------------------------------------------------

    async def on_receive(self, message: Any) -> Any:
        if self._is_excluded(getattr(message, "task_id", "")):
            log.info("environment %s: excluded task %s: %s", self.record.id, message.task_id, message)
        elif isinstance(message, TaskDied):
            log.warning(
                "environment %s: task %s died: %s", self.record.id, message.task_id, message.description
            )
            active = (states.DEPLOYED, states.CONFIGURED, states.RUNNING)
            if message.critical and self.fsm.state in active:
                self.record.error = f"critical task {message.task_id} died: {message.description}"
                await self._enter_error()
        elif isinstance(message, TaskDeviceEvent):
            await self._on_device_event(message)
        return None

    async def _on_device_event(self, message: TaskDeviceEvent) -> None:
        if self.fsm.state != states.RUNNING:
            return
        if message.type == "BASIC_TASK_TERMINATED":
            log.info(
                "environment %s: basic task %s ended: %s", self.record.id, message.task_id, message.detail
            )
            if message.exit_code != 0 and message.critical:
                self.record.error = f"critical basic task {message.task_id} failed: {message.detail}"
                await self._enter_error()
                return
        if message.type in ("END_OF_STREAM", "BASIC_TASK_TERMINATED"):
            # The task is safe to stop; once all are, the run is over (the original's auto-stop).
            self.end_of_stream.add(message.task_id)
            controllable = {
                e.record.id
                for e in self.entries.values()
                if e.record.status == "ACTIVE" and not e.record.excluded
            }
            if controllable and controllable <= self.end_of_stream:
                log.info("environment %s: every task reached end of stream, stopping the run", self.record.id)
                try:
                    await self._run(states.STOP_ACTIVITY)
                except TransitionError as exc:
                    log.error("%s", exc)
        elif message.type == "TASK_INTERNAL_ERROR" and message.critical:
            self.record.error = f"critical task {message.task_id} reported an internal error"
            await self._enter_error()
