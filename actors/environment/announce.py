"""What an environment tells the event bus: transitions, their steps, and the run's start and end."""

from __future__ import annotations

import time

from actors.environment.state import EnvironmentState
from aliecs.environment import fsm as states
from aliecs.events import (
    DONE_ERROR,
    DONE_OK,
    ONGOING,
    STARTED,
    STEP_FINISHED,
    STEP_STARTING,
    EnvironmentEvent,
    RunEvent,
)


def announce(env: EnvironmentState, transition: str, status: str, message: str = "", error: str = "") -> None:
    """A transition (or an in-place change such as EXCLUDE) starts or ends; START_ACTIVITY,
    STOP_ACTIVITY and GO_ERROR ending also mark the run's start or end (`run_event`)."""
    env.context.bus.publish(
        EnvironmentEvent(
            environment_id=env.record.id,
            state=env.fsm.state,
            transition=transition,
            transition_status=status,
            run_number=env.record.run_number,
            message=message,
            error=error,
        )
    )
    if transition in (states.START_ACTIVITY, states.STOP_ACTIVITY, states.GO_ERROR) and status != STARTED:
        run_event(env, transition, status, error)


def announce_step(env: EnvironmentState, trigger: str, finished: bool, error: str) -> None:
    """A step of the running transition starts or finishes (`transition_step` = the trigger
    point, or `tasks_<EVENT>`), as the original says it: ONGOING, or DONE_ERROR if it failed."""
    env.context.bus.publish(
        EnvironmentEvent(
            environment_id=env.record.id,
            state=env.fsm.state,
            transition=env.record.current_transition,
            transition_step=trigger,
            transition_status=DONE_ERROR if error else ONGOING,
            run_number=env.record.run_number,
            error=error,
            message=STEP_FINISHED if finished else STEP_STARTING,
        )
    )


def run_event(env: EnvironmentState, transition: str, status: str, error: str = "") -> None:
    """Run events mark the start and end of start-of-run and of end-of-run (their timestamps are
    the SOR/EOR times); none is sent when no run is active."""
    if not env.run_active:
        return
    now_ms = int(time.time() * 1000)
    record = env.record
    if transition == states.START_ACTIVITY and status == DONE_OK:
        record.run_start_completion_time_ms = now_ms
    elif transition != states.START_ACTIVITY:  # STOP_ACTIVITY or GO_ERROR end the run
        record.run_end_time_ms = record.run_end_time_ms or now_ms  # set once, at the first of them
        if status != STARTED:
            record.run_end_completion_time_ms = now_ms
    run = record.run_number or record.last_run_number
    env.context.bus.publish(RunEvent(record.id, run, env.fsm.state, transition, status, error))
    if transition != states.START_ACTIVITY and status == DONE_OK:
        env.run_active = False
