"""RESET: CONFIGURED -> DEPLOYED, the tasks back to STANDBY (their processes keep running)."""

from __future__ import annotations

from actors.environment import fanout
from actors.environment.state import EnvironmentState
from aliecs.environment import fsm as states
from aliecs.errors import TaskError


async def reset(env: EnvironmentState) -> list[TaskError]:
    return await fanout.transition_tasks(env, "CONFIGURED", "RESET", {}, env.timeout(states.RESET))
