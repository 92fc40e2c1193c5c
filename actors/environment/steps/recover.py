"""RECOVER: ERROR -> DEPLOYED. Dead tasks are deployed again in place; the others are brought back
to STANDBY (STOP, RESET or RECOVER, whichever their state needs). The original declares RECOVER
but never implements it.
"""

from __future__ import annotations

from actors.environment import fanout
from actors.environment.state import EnvironmentState
from actors.environment.steps.deploy import deploy
from aliecs.environment import fsm as states
from aliecs.errors import TaskError

# The task event that brings a task in each state one step back towards STANDBY.
TOWARDS_STANDBY = (("RUNNING", "STOP"), ("CONFIGURED", "RESET"), ("ERROR", "RECOVER"))


async def recover(env: EnvironmentState) -> list[TaskError]:
    """ERROR -> DEPLOYED: restart dead tasks in place, bring the others back to STANDBY."""
    included = env.included()
    dead = [entry for entry in included if entry.record.status != "ACTIVE"]
    errors: list[TaskError] = []
    if dead:
        await fanout.kill(dead, "RECOVER (cleanup)")
        await env.context.scheduler.proxy().release([entry.record.id for entry in dead])
        for entry in dead:
            entry.placement = None
        errors += await deploy(env, dead)
    timeout = env.timeout(states.RECOVER)
    for src, event in TOWARDS_STANDBY:
        targets = [entry for entry in included if entry.record.state == src]
        errors += await fanout.transition_tasks(env, src, event, {}, timeout, targets=targets)
    for entry in included:
        reported = any(error.task_id == entry.record.id for error in errors)
        if entry.record.state != "STANDBY" and entry.record.critical and not reported:
            errors.append(entry.error(f"RECOVER: task is {entry.record.state}, not STANDBY"))
    return errors
