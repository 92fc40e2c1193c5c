"""The built-in step of each environment transition, one module per transition (as the original's
`core/environment/transition_*.go`): what the tasks are told between `leave_<STATE>` and
`enter_<STATE>`. The engine (`actors.environment.engine`) runs them; each takes the environment's
state and returns the tasks' errors (critical ones fail the transition).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from actors.environment.state import EnvironmentState
from actors.environment.steps.activity import begin_run, start_activity, stop_activity
from actors.environment.steps.configure import configure
from actors.environment.steps.deploy import deploy
from actors.environment.steps.exit import exit_
from actors.environment.steps.go_error import go_error
from actors.environment.steps.recover import recover
from actors.environment.steps.reset import reset
from aliecs.environment import fsm as states
from aliecs.errors import TaskError

Step = Callable[[EnvironmentState], Awaitable[list[TaskError]]]
Preparation = Callable[[EnvironmentState], Awaitable[None]]

# The tasks' step of each transition.
STEPS: dict[str, Step] = {
    states.DEPLOY: deploy,
    states.CONFIGURE: configure,
    states.START_ACTIVITY: start_activity,
    states.STOP_ACTIVITY: stop_activity,
    states.RESET: reset,
    states.EXIT: exit_,
    states.GO_ERROR: go_error,
    states.RECOVER: recover,
}

# Built-in steps of `before_<EVENT>`, between its negative and non-negative hook weights.
PREPARATIONS: dict[str, Preparation] = {
    states.START_ACTIVITY: begin_run,
}
