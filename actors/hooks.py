"""The hook engine: `call` roles and hook tasks fired at an environment's trigger points.

A transition passes four trigger points (`before_<EVENT>`, `leave_<STATE>`, `enter_<STATE>`,
`after_<EVENT>`), a teardown three more (`leave_<STATE>`, `DESTROY`, `after_DESTROY`). Hooks attach to
a point with an integer weight (`before_START_ACTIVITY-10`); weights run in ascending order, the
negative ones before the point's built-in step (e.g. the run number), the others after it. At each
weight, as the original's `handleHooks`: calls triggered here start in the background and are
registered under their await point; calls whose await point is this one are joined; hook tasks of
this weight run to their end; then, if a critical hook failed, the remaining weights are skipped and
the failure is returned for the environment to fail the transition.

Hooks are grouped per trigger point once, when the environment is built (`HookPlan`): a point with
nothing attached costs the transition one dict lookup and no event, so environments without hooks
run exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aliecs.cluster.placement import PlacementRequest
from aliecs.cluster.scheduler_interface import DeployRequest, Placement, PlacementFailure, answer
from aliecs.durations import parse_duration
from aliecs.events import DONE_ERROR, DONE_OK, STARTED, CallEvent, EventBus
from aliecs.executor.orders import LaunchOrder
from aliecs.executor.process import ExitInfo, LaunchSpec
from aliecs.integrations import CallContext, Plugin
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.expr import Namespace, evaluate, format_value
from aliecs.workflow.functions import base_function_scope
from aliecs.workflow.template import Role

if TYPE_CHECKING:
    from actors.local_cluster import LocalClusterActor
    from actors.runtime import AsyncActorRef

Point = tuple[str, int]
# Plugins honour a call's timeout themselves (as in the original, where the core never aborts a
# call), so their own error says what timed out; the engine's deadline, this much later, only
# catches a function that does not.
CALL_SAFETY_NET_S = 1.0
# What running a hook task gives: how it ended (None: killed at its timeout) and its last output.
TaskRun = tuple[ExitInfo | None, tuple[str, ...]]


def parse_trigger(text: str) -> Point:
    """`before_CONFIGURE+2` -> ("before_CONFIGURE", 2): split at the last `+`/`-`, no weight is 0."""
    text = text.strip()
    cut = max(text.rfind("+"), text.rfind("-"))
    if cut <= 0:
        return text, 0
    return text[:cut], int(text[cut:])


def point_name(point: Point) -> str:
    return f"{point[0]}{point[1]:+d}"


@dataclass(frozen=True)
class Hook:
    """One call role or hook task role, with its trigger and await points resolved."""

    role: Role
    point: Point
    await_point: Point
    timeout: float
    critical: bool

    @property
    def is_call(self) -> bool:
        return self.role.call is not None


@dataclass(frozen=True)
class HookError:
    """A hook that failed at a trigger point; critical ones fail the transition."""

    path: str
    point: str
    message: str
    critical: bool = True

    def __str__(self) -> str:
        kind = "" if self.critical else " (non-critical)"
        return f"hook {self.path} at {self.point}{kind}: {self.message}"


class HookPlan:
    """The hooks of one workflow, grouped by trigger point (computed once per environment)."""

    def __init__(self, root: Role) -> None:
        self.root = root
        self.fired: dict[Point, list[Hook]] = {}
        weights: dict[str, set[int]] = {}
        for role in root.walk():
            traits = role.call or (role.task if role.is_hook else None)
            if traits is None or not traits.trigger:
                continue  # a call without a trigger never fires, as in the original
            try:
                point = parse_trigger(traits.trigger)
                await_point = parse_trigger(traits.await_ or traits.trigger) if role.call else point
                timeout = parse_duration(traits.timeout)
            except ValueError as exc:
                raise TemplateError(f"hook traits: {exc}", file=role.source, role_path=role.path) from exc
            self.fired.setdefault(point, []).append(Hook(role, point, await_point, timeout, traits.critical))
            weights.setdefault(point[0], set()).add(point[1])
            weights.setdefault(await_point[0], set()).add(await_point[1])
        # Per trigger: the weights where something starts or is awaited, in the order they run.
        self.weights = {trigger: sorted(found) for trigger, found in weights.items()}


class HookTaskLauncher:
    """Runs hook tasks on a node: placed like any task (not controllable), launched by the node's
    executor, run to their end within their timeout, then forgotten and released."""

    def __init__(
        self,
        scheduler: AsyncActorRef[LocalClusterActor],
        spec_for: Callable[[Role, str, Placement], LaunchSpec],
    ) -> None:
        self.scheduler = scheduler
        self.spec_for = spec_for

    async def __call__(self, role: Role, timeout: float) -> TaskRun:
        assert role.task is not None
        task_class = role.task.task_class
        task_id = uuid.uuid4().hex[:20]
        request = PlacementRequest(
            task_id, role.path, task_class.wants, {**task_class.constraints, **role.constraints}
        )
        (placement,) = await answer(
            self.scheduler.proxy().place([DeployRequest(request, controllable=False)])
        )
        try:
            if isinstance(placement, PlacementFailure):
                raise RuntimeError(f"undeployable: {placement.reason}")
            spec = self.spec_for(role, task_id, placement)
            outcome = await placement.executor.run_hook(LaunchOrder(spec, None, False), timeout)
            info = None if outcome.returncode is None else ExitInfo(outcome.returncode)
            return info, outcome.log_tail
        finally:
            await self.scheduler.proxy().release([task_id])


class HookEngine:
    """Fires one environment's hooks; keeps the calls that are awaited at a later point."""

    def __init__(
        self,
        plan: HookPlan,
        environment_id: str,
        bus: EventBus,
        plugins: Mapping[str, Plugin],
        run_task: Callable[[Role, float], Awaitable[TaskRun]],
        runtime_vars: Callable[[], Mapping[str, str]],
        announce_step: Callable[[str, bool, str], None],
    ) -> None:
        self.plan = plan
        self.environment_id = environment_id
        self.bus = bus
        self.plugins = plugins
        self.run_task = run_task
        self.runtime_vars = runtime_vars
        self.announce_step = announce_step
        self.pending: dict[Point, list[asyncio.Future[HookError | None]]] = {}
        # Environment-wide variables set by plugins during calls (`CallContext.set_var`).
        self.plugin_vars: dict[str, str] = {}

    async def fire(
        self, trigger: str, builtin: Callable[[], Awaitable[None]] | None = None
    ) -> list[HookError]:
        """Run the hooks of `trigger` around its built-in step; every hook error, critical or not.

        After a critical failure the remaining weights and, if not yet run, the built-in step are
        skipped."""
        weights = self.plan.weights.get(trigger)
        # Every trigger point is a step clients see start and finish, hooks or not, as in the original.
        self.announce_step(trigger, False, "")
        if weights is None:
            if builtin is not None:
                await builtin()
            self.announce_step(trigger, True, "")
            return []
        errors: list[HookError] = []
        for weight in weights:
            if builtin is not None and weight >= 0:
                await builtin()
                builtin = None
            errors += await self._run_weight((trigger, weight))
            if any(error.critical for error in errors):
                break
        else:
            if builtin is not None:
                await builtin()
        critical = "; ".join(str(error) for error in errors if error.critical)
        self.announce_step(trigger, True, critical)
        return errors

    async def _run_weight(self, point: Point) -> list[HookError]:
        hooks = self.plan.fired.get(point, [])
        for hook in hooks:
            if hook.is_call:
                self.pending.setdefault(hook.await_point, []).append(asyncio.ensure_future(self._call(hook)))
        awaited = self.pending.pop(point, [])
        tasks = [self._task(hook) for hook in hooks if not hook.is_call]
        results = await asyncio.gather(*awaited, *tasks)
        return [error for error in results if error is not None]

    async def cancel_pending(self) -> None:
        """Drop calls still waiting for an await point that will not come (teardown)."""
        futures = [future for waiting in self.pending.values() for future in waiting]
        self.pending.clear()
        for future in futures:
            future.cancel()
        for future in futures:
            with contextlib.suppress(asyncio.CancelledError):
                await future

    # -- calls -----------------------------------------------------------------------------------

    def _call_vars(self, role: Role) -> dict[str, str]:
        """The variables a call sees (the original's call varStack)."""
        assert role.call is not None
        return {
            **role.stack,
            **self.runtime_vars(),
            **self.plugin_vars,
            "environment_id": self.environment_id,
            "__call_func": role.call.func,
            "__call_timeout": role.call.timeout,
            "__call_trigger": role.call.trigger,
            "__call_await": role.call.await_,
            "__call_critical": str(role.call.critical).lower(),
            "__call_rolepath": role.path,
        }

    def _scope(self, context: CallContext) -> dict[str, Any]:
        namespaces = {
            name: Namespace(name, plugin.functions(context)) for name, plugin in self.plugins.items()
        }
        scope = base_function_scope(namespaces)
        scope.update(context.vars)
        return scope

    def _role_stacks(self) -> list[Mapping[str, str]]:
        return [role.stack for role in self.plan.root.walk()]

    async def _call(self, hook: Hook) -> HookError | None:
        """Evaluate the call's `func` (awaiting it under its timeout); never raises."""
        role = hook.role
        spec = role.call
        assert spec is not None
        context = CallContext(
            self.environment_id,
            role.path,
            spec.func,
            spec.trigger,
            spec.await_,
            hook.timeout,
            spec.critical,
            self._call_vars(role),
            set_var=self.plugin_vars.__setitem__,
            roles=self._role_stacks,
        )
        self._call_event(hook, STARTED)
        output = ""
        try:
            value = evaluate(spec.func, self._scope(context))
            if inspect.isawaitable(value):
                limit = hook.timeout + CALL_SAFETY_NET_S if hook.timeout > 0 else None
                value = await asyncio.wait_for(value, limit)
            output = "" if value is None else format_value(value)
        except TimeoutError:
            error = f"{spec.func}: no result within {hook.timeout:g}s"
        except Exception as exc:  # plugin and expression errors alike fail the call, not the engine
            error = f"{spec.func}: {exc}"
        else:
            error = ""
            if spec.return_var:
                role.user_vars[spec.return_var] = output
        self._call_event(hook, DONE_ERROR if error else DONE_OK, error, output)
        return HookError(role.path, point_name(hook.point), error, hook.critical) if error else None

    def _call_event(self, hook: Hook, status: str, error: str = "", output: str = "") -> None:
        spec = hook.role.call
        assert spec is not None
        self.bus.publish(
            CallEvent(
                environment_id=self.environment_id,
                path=hook.role.path,
                func=spec.func,
                status=status,
                error=error,
                output=output,
                trigger=spec.trigger,
                await_=spec.await_,
                timeout=spec.timeout,
                critical=spec.critical,
            )
        )

    # -- hook tasks ------------------------------------------------------------------------------

    async def _task(self, hook: Hook) -> HookError | None:
        """Run a hook task to its end; its result becomes the role's `taskResult.*` variables."""
        role = hook.role
        try:
            info, output = await self.run_task(role, hook.timeout)
        except Exception as exc:
            return HookError(role.path, point_name(hook.point), f"cannot run: {exc}", hook.critical)
        if info is None:
            status, error = "TIMEOUT", f"still running after {hook.timeout:g}s, killed"
        elif info.clean:
            status, error = "FINISHED", ""
        else:
            status, error = "FAILED", info.report(output)
        # stdout and stderr share the task's log; its last lines stand for both.
        role.user_vars.update(
            {
                "taskResult.exitCode": str(info.returncode) if info is not None else "-1",
                "taskResult.stdout": "\n".join(output),
                "taskResult.stderr": "",
                "taskResult.finalStatus": status,
                "taskResult.timestamp": str(int(time.time() * 1000)),
            }
        )
        return HookError(role.path, point_name(hook.point), error, hook.critical) if error else None
