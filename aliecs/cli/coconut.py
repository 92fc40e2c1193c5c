"""`coconut`: the aliecs control and configuration utility.

The full command tree (environments, tasks, roles, repositories over the gRPC control API) comes
with the control server; what works today needs no running core.
"""

from __future__ import annotations

import click

from aliecs.workflow.repository import default_repository


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """coconut - the aliecs control and configuration utility."""


@cli.command()
def about() -> None:
    """Show what this tool is."""
    from importlib.metadata import version

    click.echo(f"coconut (aliecs {version('aliecs')}): control and configuration utility for aliecs")


@cli.group()
def template() -> None:
    """Workflow templates."""


@template.command("list")
def template_list() -> None:
    """List the workflow templates of the default repository."""
    repository = default_repository()
    click.echo(f"repository {repository.name} ({repository.root})")
    for name in repository.list_workflows():
        click.echo(f"  workflows/{name}")


def main() -> None:
    cli()
