"""Automatic end of run after a fixed time: `auto_stop_enabled: "true"` and `auto_stop_timeout: 30m`.

As in the original, the timer starts when START_ACTIVITY completes and fires a STOP_ACTIVITY in the
name of the special user TIMER (`common.SpecialUserId`); any other end of the run (a STOP, an error,
the environment's teardown) cancels it. The timers live beside the environments, driven by the run
events they publish, so the transition engine needs no clock of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aliecs.durations import parse_duration
from aliecs.errors import AliecsError
from aliecs.events import DONE_OK, EventBus, RequestUser, RunEvent, SubscriberOverflow

log = logging.getLogger(__name__)

ENABLED = "auto_stop_enabled"
TIMEOUT = "auto_stop_timeout"
# common.SpecialUserId.TIMER, named as the original names special users (id in externalId).
TIMER_USER = RequestUser(name="TIMER", external_id=65)


class AutoStop:
    """Watches run events on `bus`; `variables(env_id)` gives an environment's root variables and
    `stop(env_id, run_number)` stops that run (if it is still the current one)."""

    def __init__(
        self,
        bus: EventBus,
        variables: Callable[[str], dict[str, str] | None],
        stop: Callable[[str, int], Awaitable[None]],
    ) -> None:
        self.bus = bus
        self.variables = variables
        self.stop_run = stop
        self.timers: dict[str, asyncio.Task[None]] = {}
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._watch = asyncio.create_task(self._run(), name="aliecs-auto-stop")

    async def close(self) -> None:
        for timer in [*self.timers.values(), *([self._watch] if self._watch else [])]:
            timer.cancel()
        await asyncio.gather(
            *self.timers.values(), *([self._watch] if self._watch else []), return_exceptions=True
        )
        self.timers.clear()

    async def _run(self) -> None:
        while True:
            subscription = self.bus.subscribe()
            try:
                async for event in subscription:
                    if isinstance(event, RunEvent):
                        self._on_run_event(event)
            except SubscriberOverflow:
                log.error("auto stop fell behind the events; timers of runs started meanwhile are lost")
                continue
            finally:
                subscription.close()
            return

    def _on_run_event(self, event: RunEvent) -> None:
        if event.transition != "START_ACTIVITY":  # STOP_ACTIVITY or GO_ERROR: the run is ending
            self._cancel(event.environment_id)
            return
        if event.transition_status != DONE_OK:
            return
        delay = self._delay(event.environment_id)
        if delay is None:
            return
        self._cancel(event.environment_id)
        log.info(
            "environment %s: run %s stops by itself in %gs", event.environment_id, event.run_number, delay
        )
        self.timers[event.environment_id] = asyncio.create_task(
            self._fire(event.environment_id, event.run_number, delay)
        )

    def _delay(self, env_id: str) -> float | None:
        stack = self.variables(env_id) or {}
        if stack.get(ENABLED, "").strip().lower() != "true" or not stack.get(TIMEOUT, "").strip():
            return None
        try:
            return parse_duration(stack[TIMEOUT])
        except ValueError as exc:
            log.error(
                "environment %s: %s %r is not a duration (%s); no automatic stop",
                env_id,
                TIMEOUT,
                stack[TIMEOUT],
                exc,
            )
            return None

    def _cancel(self, env_id: str) -> None:
        timer = self.timers.pop(env_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _fire(self, env_id: str, run_number: int, delay: float) -> None:
        await asyncio.sleep(delay)  # the timer itself, not a synchronisation
        self.timers.pop(env_id, None)
        with contextlib.suppress(AliecsError):  # gone, or already stopped: nothing to do
            await self.stop_run(env_id, run_number)
