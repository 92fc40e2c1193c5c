"""EXIT: STANDBY, DEPLOYED or CONFIGURED -> DONE; every task's process is killed and released.

The original declares EXIT but never implements it. Killing never fails the transition: what
could not be killed is logged (EXIT, like GO_ERROR, always completes). `kill_all` is also the
last step of a destroy, whatever state the environment is in.
"""

from __future__ import annotations

import logging

from actors.environment import fanout
from actors.environment.state import EnvironmentState
from aliecs.errors import TaskError

log = logging.getLogger(__name__)


async def exit_(env: EnvironmentState) -> list[TaskError]:
    await kill_all(env)
    return []


async def kill_all(env: EnvironmentState) -> None:
    """Kill every task's process, release its placement; errors are logged."""
    errors = await fanout.kill(list(env.entries.values()), "kill")
    for error in errors:
        log.error("environment %s: %s", env.record.id, error)
    await env.context.scheduler.proxy().release(list(env.entries))
    for entry in env.entries.values():
        entry.placement = None
