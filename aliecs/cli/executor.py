"""`aliecs-executor`: the per-node executor as a separate process.

On the embedded local cluster every node's executor is an actor inside the core process, so this
command has nothing to do there; it becomes the Mesos custom executor (launched by a Mesos agent,
speaking the v1 executor HTTP API) with the Mesos work.
"""

from __future__ import annotations

import os
import sys

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--agent-endpoint", envvar="MESOS_AGENT_ENDPOINT", default=None, help="Mesos agent (set by Mesos)."
)
def command(agent_endpoint: str | None) -> None:
    """Run the aliecs executor for one node under a Mesos agent."""
    if not agent_endpoint:
        click.echo(
            "aliecs-executor: no MESOS_AGENT_ENDPOINT: this command is launched by a Mesos agent. "
            "The embedded local cluster runs its executors inside aliecs-core.",
            err=True,
        )
        sys.exit(2)
    click.echo(
        f"aliecs-executor: Mesos executor mode (agent {agent_endpoint}, pid {os.getpid()}) "
        "is not available yet",
        err=True,
    )
    sys.exit(2)


def main() -> None:
    command()
