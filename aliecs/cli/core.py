"""`aliecs-core`: the control system as a long-running process.

For now it runs the embedded local cluster and keeps it up until SIGTERM/SIGINT, then destroys every
environment so that no task process is left behind. The gRPC control API comes with the control
server work; until then environments are driven through the Python API.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import click

from aliecs.api import Core, default_state_dir
from aliecs.runtime import run


async def _serve(state_dir: Path, nodes: int, inventory: Path | None) -> int:
    async with Core.embedded(state_dir=state_dir, nodes=inventory or nodes) as core:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        names = ", ".join(node.hostname for node in core.nodes)
        click.echo(f"aliecs-core: local cluster with nodes {names}; state in {core.state_dir}")
        click.echo("aliecs-core: the gRPC control API is not served yet; use the Python API (aliecs.Core)")
        await stop.wait()
        click.echo("aliecs-core: shutting down: destroying environments")
    return 0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", type=click.Path(path_type=Path), default=None, help="State directory.")
@click.option("--nodes", type=int, default=1, show_default=True, help="Simulated nodes in the local cluster.")
@click.option(
    "--inventory",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML inventory of nodes (instead of --nodes).",
)
def command(state_dir: Path | None, nodes: int, inventory: Path | None) -> None:
    """Run the aliecs control system (embedded local cluster) until SIGTERM."""
    sys.exit(run(_serve(state_dir or default_state_dir(), nodes, inventory)))


def main() -> None:
    command()
