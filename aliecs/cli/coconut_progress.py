"""The progress line coconut shows while a transition or a teardown runs.

A spinner that says nothing leaves the operator wondering whether to wait or to act. While the
request runs, coconut follows the environment's events and shows the time spent against the
transition's deadline, how many tasks have reached the target state and which are still pending,
the hook step being run, and, for a teardown, which step it is in and what it still waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import betterproto

from aliecs.environment import fsm as states
from aliecs.environment.timeouts import transition_timeout
from aliecs.events import STEP_STARTING
from aliecs.generated import events as events_pb
from aliecs.generated import o2control as pb
from aliecs.server.client import ControlClient

_NAMES_SHOWN = 3
_REFRESH = 0.25  # seconds between two redraws of the elapsed time
_SYNC = 1.0  # seconds between two snapshots of the task states (events cover the time between)

T = TypeVar("T")


class Progress:
    """What a running transition has done so far, from the environment's events."""

    def __init__(
        self, action: str, env: pb.EnvironmentInfo, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.action = action  # a transition name, or "DESTROY"
        self.clock = clock
        self.began = clock()
        variables = {**env.defaults, **env.vars, **env.user_vars}
        try:
            self.deadline: float | None = (
                None if action == "DESTROY" else transition_timeout(action, variables)
            )
        except ValueError:
            self.deadline = None
        self.target = states.TASK_STATE_AFTER.get(action, "")
        self.tasks = {task.task_id: (task.name, task.state) for task in env.tasks}
        self.step = ""

    def sync(self, env: pb.EnvironmentInfo) -> None:
        """Take the task states of a snapshot (events sent before the subscription began are lost)."""
        for task in env.tasks:
            self.tasks[task.task_id] = (task.name, task.state)

    def apply(self, event: events_pb.Event) -> None:
        kind, payload = betterproto.which_one_of(event, "Payload")
        if kind == "task_event" and isinstance(payload, events_pb.EvTaskEvent):
            self.tasks[payload.taskid] = (payload.name, payload.state)
        elif kind == "environment_event" and isinstance(payload, events_pb.EvEnvironmentEvent):
            status = payload.transition_status.name
            # a teardown runs STOP_ACTIVITY, RESET and EXIT as steps of its own
            teardown = bool(payload.transition) and payload.transition != self.action
            if payload.transition_step:
                step = payload.transition_step if payload.message == STEP_STARTING else ""
                self.step = f"{payload.transition} {step}".rstrip() if teardown else step
            elif teardown:
                self.step = payload.transition if status == "STARTED" else ""

    def text(self) -> str:
        elapsed = self.clock() - self.began
        head = f"{self.action}: {elapsed:.1f}s"
        if self.deadline is not None:
            head += f" of {self.deadline:g}s deadline"
        parts = [head]
        if self.step:
            parts.append(f"step {self.step}")
        if self.target and self.tasks:
            done = [name for name, state in self.tasks.values() if state == self.target]
            failed = [name for name, state in self.tasks.values() if state == "ERROR"]
            pending = [name for name, state in self.tasks.values() if state not in (self.target, "ERROR")]
            counts = f"tasks {len(done)} {self.target} / {len(pending)} pending"
            if failed:
                counts += f" / {len(failed)} ERROR"
            parts.append(counts)
            if pending and len(pending) <= _NAMES_SHOWN:
                parts.append("waiting for " + ", ".join(sorted(pending)))
            elif pending:
                parts.append("waiting for " + ", ".join(sorted(pending)[:_NAMES_SHOWN]) + ", ...")
        return " · ".join(parts)


async def follow(client: ControlClient, env_id: str, progress: Progress, show: Callable[[str], None]) -> None:
    """Feed `progress` from the environment's events (and a snapshot every second, for what
    happened before the subscription took effect) and redraw it until cancelled."""
    events = client.subscribe(env_id)
    show(progress.text())
    next_event: asyncio.Future[events_pb.Event] | None = None
    ended = False
    synced = time.monotonic()
    try:
        while True:
            if time.monotonic() - synced >= _SYNC:
                synced = time.monotonic()
                with contextlib.suppress(Exception):  # gone meanwhile: the request will say so
                    snapshot = await client.stub.get_environment(pb.GetEnvironmentRequest(id=env_id))
                    progress.sync(snapshot.environment)
            if next_event is None and not ended:
                next_event = asyncio.ensure_future(anext(events))
            if next_event is None:
                await asyncio.sleep(_REFRESH)  # the stream ended: keep the clock running
            else:
                done, _ = await asyncio.wait({next_event}, timeout=_REFRESH)
                if next_event in done:
                    try:
                        progress.apply(next_event.result())
                    except StopAsyncIteration:
                        ended = True
                    next_event = None
            show(progress.text())
    finally:
        if next_event is not None:
            next_event.cancel()
            with contextlib.suppress(BaseException):
                await next_event
        with contextlib.suppress(BaseException):
            await events.aclose()  # type: ignore[attr-defined]


async def with_progress(
    client: ControlClient,
    env_id: str,
    action: str,
    show: Callable[[str], None] | None,
    request: Callable[[], Awaitable[T]],
) -> T:
    """Await `request()` while the progress of `action` on `env_id` is shown through `show` (when a
    spinner is on screen; None: just await)."""
    if show is None:
        return await request()
    reply = await client.stub.get_environment(pb.GetEnvironmentRequest(id=env_id))
    watcher = asyncio.ensure_future(follow(client, env_id, Progress(action, reply.environment), show))
    try:
        return await request()
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
