"""GO_ERROR: any state -> ERROR; stop the tasks that are running, and end the run if there is one.

Its task errors are reported as non-critical: nothing may keep an environment out of ERROR.
"""

from __future__ import annotations

from actors.environment import fanout
from actors.environment.announce import run_event
from actors.environment.state import EnvironmentState
from actors.environment.steps.activity import stop_arguments
from aliecs.environment import fsm as states
from aliecs.errors import TaskError
from aliecs.events import STARTED


async def go_error(env: EnvironmentState) -> list[TaskError]:
    """Stop whatever is running; errors are reported but never block entering ERROR."""
    running = [entry for entry in env.included() if entry.record.state == "RUNNING"]
    run_event(env, states.GO_ERROR, STARTED)
    arguments = stop_arguments(env)
    timeout = env.timeout(states.STOP_ACTIVITY)
    errors = await fanout.transition_tasks(env, "RUNNING", "STOP", arguments, timeout, targets=running)
    return [TaskError(e.task_id, e.name, e.host, e.message, critical=False) for e in errors]
