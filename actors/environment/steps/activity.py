"""START_ACTIVITY and STOP_ACTIVITY: a run of the environment, CONFIGURED -> RUNNING -> CONFIGURED.

Before START, the run gets its number (`begin_run`, the built-in step of `before_START_ACTIVITY`,
so that hooks of weight >= 0 see it); START carries it with the run's start time, STOP the run's
end time. The run's start and end are also announced as run events (`announce.run_event`).
"""

from __future__ import annotations

import time

from actors.environment import fanout, wiring
from actors.environment.announce import run_event
from actors.environment.state import EnvironmentState
from aliecs.environment import fsm as states
from aliecs.errors import TaskError
from aliecs.events import STARTED


async def begin_run(env: EnvironmentState) -> None:
    """Built-in step of before_START_ACTIVITY: the run number, which its hooks of weight >= 0 see."""
    now_ms = int(time.time() * 1000)
    record = env.record
    record.run_number = await env.context.run_numbers.allocate(record.id, now_ms)
    record.last_run_number = record.run_number
    record.run_start_time_ms = now_ms
    record.run_start_completion_time_ms = 0
    record.run_end_time_ms = record.run_end_completion_time_ms = 0
    env.run_active = True
    run_event(env, states.START_ACTIVITY, STARTED)
    env.end_of_stream.clear()


def start_arguments(env: EnvironmentState, count: int) -> dict[str, str]:
    return wiring.start_arguments(env.record, env.workflow.root.stack, count)


def stop_arguments(env: EnvironmentState) -> dict[str, str]:
    return wiring.stop_arguments(env.record, env.workflow.root.stack)


async def start_activity(env: EnvironmentState) -> list[TaskError]:
    arguments = start_arguments(env, env.start_count)
    env.start_count += 1
    return await fanout.transition_tasks(
        env, "CONFIGURED", "START", arguments, env.timeout(states.START_ACTIVITY)
    )


async def stop_activity(env: EnvironmentState) -> list[TaskError]:
    run_event(env, states.STOP_ACTIVITY, STARTED)
    arguments = stop_arguments(env)
    return await fanout.transition_tasks(env, "RUNNING", "STOP", arguments, env.timeout(states.STOP_ACTIVITY))
