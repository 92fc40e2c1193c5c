"""CONFIGURE: tell every included task its channels and properties, STANDBY -> CONFIGURED.

The arguments are computed first for all tasks (`wiring.configure_arguments`: `connect` channels
resolve against the endpoints of every placed task); a critical task whose arguments cannot be
worked out fails the transition before any task is configured.
"""

from __future__ import annotations

from actors.environment import fanout, wiring
from actors.environment.entries import TaskEntry
from actors.environment.state import EnvironmentState
from aliecs.environment import fsm as states
from aliecs.errors import TaskError


async def configure(env: EnvironmentState) -> list[TaskError]:
    arguments, errors = configure_arguments(env, env.included())
    if any(error.critical for error in errors):
        return errors
    return errors + await fanout.transition_tasks(
        env, "STANDBY", "CONFIGURE", {}, env.timeout(states.CONFIGURE), per_task=arguments
    )


def configure_arguments(
    env: EnvironmentState, entries: list[TaskEntry], keep: bool = True
) -> tuple[dict[str, dict[str, str]], list[TaskError]]:
    """What CONFIGURE sends each of `entries` (see `wiring.configure_arguments`), resolved against
    every placed task of the environment, excluded ones too: they keep running. `keep` records
    them as the tasks' properties (they are about to be sent)."""
    arguments, errors = wiring.configure_arguments(entries, env.entries.values(), env.record.id)
    if keep:
        for entry in entries:
            if entry.record.id in arguments:
                entry.record.properties = arguments[entry.record.id]
    return arguments, errors
