"""The transition engine: how an environment runs one event, whatever the event.

A transition passes its hook trigger points in order (`before_<EVENT>`, `leave_<STATE>`, the tasks'
step, `enter_<STATE>`, `after_<EVENT>`; see `actors.hooks`), announcing each step as it starts and
ends. The tasks' step is the transition's own (`actors.environment.steps`). A critical failure
before the state changes leaves the state as it was; either way a failed transition sends the
environment to ERROR (GO_ERROR) and raises a `TransitionError` carrying every task's error and the
critical hook failures. GO_ERROR and EXIT always complete: their failures are only warnings.

A helper object owned by the environment actor (it holds the step table and the hook engine); it
runs in the actor's mailbox like everything else of the environment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from actors.environment.announce import announce, announce_step
from actors.environment.persistence import persist
from actors.environment.state import EnvironmentState
from actors.environment.steps import Preparation, Step
from actors.hooks import HookEngine, HookError
from aliecs.environment import fsm as states
from aliecs.errors import InvalidTransitionError, TaskError, TransitionError
from aliecs.events import DONE_ERROR, DONE_OK, STARTED
from aliecs.model import TransitionResult
from aliecs.workflow.errors import TemplateError

log = logging.getLogger(__name__)


class TransitionEngine:
    def __init__(
        self,
        env: EnvironmentState,
        hooks: HookEngine,
        steps: Mapping[str, Step],
        preparations: Mapping[str, Preparation],
    ) -> None:
        self.env = env
        self.hooks = hooks
        self.steps = steps
        self.preparations = preparations

    async def run(self, event: str) -> TransitionResult:
        """Run `event` (already normalised) from the current state."""
        env = self.env
        record = env.record
        fsm = env.fsm
        if not fsm.can(event):
            raise InvalidTransitionError(record.id, event, fsm.state, fsm.allowed_events())
        from_state = fsm.state
        loop = asyncio.get_running_loop()
        started_ms = int(time.time() * 1000)
        began = loop.time()
        record.current_transition = event
        announce(env, event, STARTED, message="transition starting")
        # GO_ERROR and EXIT always complete: their failures (tasks, hooks) are only warnings.
        tolerant = event in (states.GO_ERROR, states.EXIT)
        hook_errors: list[HookError] = []
        errors: list[TaskError] = []
        preparation = self.preparations.get(event)

        async def fire(trigger: str, builtin: Callable[[], Awaitable[None]] | None = None) -> str:
            reason = await self.fire(trigger, hook_errors, builtin)
            return "" if tolerant else reason

        try:
            reason = await fire(f"before_{event}", None if preparation is None else lambda: preparation(env))
            reason = reason or await fire(f"leave_{from_state}")
            step = ""
            if not reason:  # the tasks' transition closes leave_<STATE>, after all its hooks
                step = f"tasks_{event}"
                announce_step(env, step, False, "")
                try:
                    errors = await self.steps[event](env)
                except TemplateError as exc:
                    reason = str(exc)
                failed = reason or "; ".join(str(error) for error in errors if error.critical)
                if failed and not tolerant:
                    announce_step(env, step, True, failed)
                    step = ""
            failures = [error for error in errors if error.critical]
            if tolerant or not (failures or reason):
                fsm.fire(event)
                record.state = fsm.state
                if step:  # finished in the state the tasks reached, as the original says it
                    announce_step(env, step, True, "")
                if event == states.DEPLOY:
                    env.context.gc.settle()
                # Failures from here on leave the state changed, but still fail the transition.
                reason = await fire(f"enter_{fsm.state}") or await fire(f"after_{event}")
                if event in (states.STOP_ACTIVITY, states.GO_ERROR):
                    # As the original: the run number stays until the after_ hooks (end-of-run calls
                    # to DCS, trigger, Bookkeeping) have seen it.
                    record.run_number = 0
            if (failures or reason) and not tolerant:
                record.error = reason or str(failures[0])
                announce(env, event, DONE_ERROR, error=record.error)
                await self.enter_error()
                raise TransitionError(record.id, event, fsm.state, errors, reason)
        finally:
            record.current_transition = ""
            await persist(env)
        announce(env, event, DONE_OK, message="transition completed successfully")
        await env.settle_roles()
        result = TransitionResult(
            event=event,
            from_state=from_state,
            to_state=fsm.state,
            started_ms=started_ms,
            duration_s=loop.time() - began,
            run_number=record.run_number,
            warnings=(*(str(error) for error in errors), *(str(error) for error in hook_errors)),
        )
        record.history.append(result)
        return result

    async def fire(
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

    async def enter_error(self) -> None:
        """GO_ERROR after a failed transition; never raises (its task and hook errors are only logged)."""
        env = self.env
        record = env.record
        if not env.fsm.can(states.GO_ERROR):
            return
        hook_errors: list[HookError] = []
        failed_transition, record.current_transition = record.current_transition, states.GO_ERROR
        try:
            await self.fire(f"before_{states.GO_ERROR}", hook_errors)
            await self.fire(f"leave_{env.fsm.state}", hook_errors)
            errors: list[TaskError] = await self.steps[states.GO_ERROR](env)
            env.fsm.fire(states.GO_ERROR)
            record.state = env.fsm.state
            await self.fire(f"enter_{env.fsm.state}", hook_errors)
            await self.fire(f"after_{states.GO_ERROR}", hook_errors)
            record.run_number = 0  # after the after_ hooks, as in `run`
        finally:
            record.current_transition = failed_transition
        for error in [*errors, *hook_errors]:
            log.warning("environment %s: GO_ERROR: %s", record.id, error)
        announce(env, states.GO_ERROR, DONE_OK, message="environment entered ERROR", error=record.error)
        await env.settle_roles()
        await persist(env)
