"""One environment: its state machine, its role tree and its transitions, as one actor.

The actor (`EnvironmentActor`, one mailbox) is split by job into rooms, as the original splits
`core/environment/` into one file per transition:

- `actor`: the mailbox and the messages it takes (build, transition, destroy, changes, journal,
  task deaths and device events).
- `engine`: running any event (before/leave/step/enter/after, step announcements, entering ERROR).
- `steps/`: the tasks' step of each transition, one module per transition (deploy, configure,
  activity for start/stop, reset, exit, go_error, recover).
- `fanout`: one request per node under one deadline, each task's answer to its actor.
- `wiring`: pure functions: a task's variables, command line, channels and transition arguments.
- `modify`: changes in place (exclude, include, reshape for set_vars and scale).
- `persistence`: the journal's snapshot and the restore after a restart of the core.
- `state`, `entries`, `announce`: the shared data every room works on, and what it publishes.

A transition fans out to the task actors concurrently under one deadline; tasks that miss it are
reported by name, never waited on forever. A failed transition sends the environment to ERROR
(GO_ERROR) and raises a `TransitionError` carrying every task's error and the critical hook failures.
"""

from actors.environment.actor import EnvironmentActor

__all__ = ["EnvironmentActor"]
