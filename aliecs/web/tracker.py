"""What the page shows that the environment records do not keep: when the running transition
began, and each environment's runs with their start and stop times.

Both come from the event bus (the same events every subscriber sees), from the moment the web
server starts. A transition's start lets the page show elapsed time against its deadline; the run
list is the shift's run history (a run ended by an error is kept and marked so). Bounded: the last
`MAX_RUNS` runs per environment, and nothing is kept about an environment once it is destroyed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aliecs.environment import fsm as states
from aliecs.events import (
    DONE_OK,
    STARTED,
    EnvironmentEvent,
    Event,
    EventBus,
    RunEvent,
    SubscriberOverflow,
    Subscription,
)
from aliecs.server.streams import is_destroyed

MAX_RUNS = 200
RUNNING, STOPPED, FAILED = "running", "stopped", "error"


@dataclass
class Run:
    run_number: int
    start_ms: int  # START_ACTIVITY began (start of run)
    started_ms: int = 0  # start of run completed: data taking
    stop_ms: int = 0  # end of run began
    end_ms: int = 0  # end of run completed
    outcome: str = RUNNING
    error: str = ""


@dataclass
class _Transition:
    event: str
    started_ms: int


class Tracker:
    """Listens to the bus in its own task; `start()` and `stop()` bracket its life."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._runs: dict[str, list[Run]] = {}
        self._transitions: dict[str, _Transition] = {}
        self._task: asyncio.Task[None] | None = None

    def runs(self, env_id: str) -> list[Run]:
        return list(self._runs.get(env_id, ()))

    def transition_started_ms(self, env_id: str, event: str) -> int:
        """When `event` began on `env_id` (0 when unknown, e.g. it began before the server started)."""
        current = self._transitions.get(env_id)
        return current.started_ms if current is not None and current.event == event else 0

    async def start(self) -> None:
        subscription = self.bus.subscribe()
        self._task = asyncio.create_task(self._listen(subscription), name="web-tracker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self, subscription: Subscription) -> None:
        try:
            while True:
                try:
                    async for event in subscription:
                        self.see(event)
                    return
                except SubscriberOverflow:  # fell behind under load: later events are still tracked
                    subscription = self.bus.subscribe()
        finally:
            subscription.close()

    def see(self, event: Event) -> None:
        if isinstance(event, RunEvent):
            self._run(event)
        elif isinstance(event, EnvironmentEvent):
            if is_destroyed(event, event.environment_id):
                self._runs.pop(event.environment_id, None)
                self._transitions.pop(event.environment_id, None)
            elif event.transition and not event.transition_step:
                if event.transition_status == STARTED:
                    ms = event.timestamp_ns // 1_000_000
                    self._transitions[event.environment_id] = _Transition(event.transition, ms)
                else:
                    self._transitions.pop(event.environment_id, None)

    def _run(self, event: RunEvent) -> None:
        ms = event.timestamp_ns // 1_000_000
        runs = self._runs.setdefault(event.environment_id, [])
        if event.transition == states.START_ACTIVITY and event.transition_status == STARTED:
            runs.append(Run(event.run_number, ms))
            del runs[:-MAX_RUNS]
            return
        run = next((r for r in reversed(runs) if r.run_number == event.run_number), None)
        if run is None:
            return
        if event.transition == states.START_ACTIVITY:
            if event.transition_status == DONE_OK:
                run.started_ms = ms
            else:
                run.error = event.error
        elif event.transition_status == STARTED:
            run.stop_ms = run.stop_ms or ms
        else:
            run.end_ms = ms
            ok = event.transition == states.STOP_ACTIVITY and event.transition_status == DONE_OK
            run.outcome = STOPPED if ok and not run.error else FAILED
            run.error = run.error or event.error
