"""`coconut template expand`: expand a workflow template offline and show what would run.

Operators use it to check a template change before anyone deploys it: the expanded role tree,
each task's class, host constraint, rendered command line, environment and channels, and the
integration calls with their trigger points. Nothing is started and no core is needed; the
inventory and configuration services are the local providers (`--inventory`), and JIT
sub-workflows come from a directory of exported workflows (`--jit-fallback`) when O2 is absent.

Registered into coconut's `template` group by the CLI; `python -m aliecs.cli.coconut_template`
runs it standalone.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click

from aliecs.errors import AliecsError
from aliecs.workflow.channels import bind_channels
from aliecs.workflow.jit import CommandGenerator, JitRegistry, fallback_repository
from aliecs.workflow.providers import MemoryStore, Providers, YamlInventory
from aliecs.workflow.repos import RepoManager
from aliecs.workflow.repository import DirectoryRepository, TemplateRepository
from aliecs.workflow.template import Channel, Role, Workflow, load_workflow


def _parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="-e")
        result[key.strip()] = value
    return result


def _channel(channel: Channel) -> dict[str, str]:
    data = {"name": channel.name, "type": channel.type, "transport": channel.transport}
    if channel.target:
        data["target"] = channel.target
    if channel.global_name:
        data["global"] = channel.global_name
    data["addressing"] = channel.addressing
    return data


def _task(role: Role, environment_id: str) -> dict[str, Any]:
    assert role.task is not None
    task_class = role.task.task_class
    constraints = {**task_class.constraints, **role.constraints}
    host = constraints.get("machine_id", "")
    special = {
        "task_id": f"{role.path}#offline",
        "task_name": role.path,
        "task_class_name": task_class.identifier,
        "task_hostname": host,
        "environment_id": environment_id,
        "task_parent_role": role.parent.path if role.parent else "",
    }
    stack = task_class.stack_for(role.stack, special)
    command = task_class.render_command(stack, role.path)
    line = " ".join((command.value, *command.arguments))
    data: dict[str, Any] = {
        "path": role.path,
        "class": task_class.name,
        "class_identifier": task_class.identifier,
        "control_mode": role.task.control_mode,
        "critical": role.task.critical,
        "host": host,
        "constraints": constraints,
        "command": line,
        "env": command.env,
        "user": command.user,
        "bind": [_channel(c) for c in bind_channels(role, stack)],
        "connect": [_channel(c) for c in role.connect],
    }
    if role.task.is_hook:
        data.update(trigger=role.task.trigger, await_=role.task.await_, timeout=role.task.timeout)
        data["await"] = data.pop("await_")
    return data


def _call(role: Role) -> dict[str, Any]:
    assert role.call is not None
    call = role.call
    return {
        "path": role.path,
        "func": call.func,
        "trigger": call.trigger,
        "await": call.await_,
        "timeout": call.timeout,
        "critical": call.critical,
        "return": call.return_var,
    }


def _document(workflow: Workflow, environment_id: str) -> dict[str, Any]:
    return {
        "workflow": workflow.name,
        "source": workflow.source,
        "roles": [
            {"path": r.path, "kind": r.kind, **({"include": r.include} if r.include else {})}
            for r in workflow.root.walk()
        ],
        "tasks": [_task(r, environment_id) for r in workflow.tasks()],
        "hooks": [_task(r, environment_id) for r in workflow.hooks()],
        "calls": [_call(r) for r in workflow.calls()],
    }


def _print_tree(workflow: Workflow, document: dict[str, Any]) -> None:
    by_path: dict[str, dict[str, Any]] = {}
    for entry in [*document["tasks"], *document["hooks"], *document["calls"]]:
        by_path[entry["path"]] = entry
    click.echo(
        f"workflow {workflow.name} ({workflow.source}): {len(document['tasks'])} tasks, "
        f"{len(document['hooks'])} hooks, {len(document['calls'])} calls"
    )
    for role in workflow.root.walk():
        depth = role.path.count(".")
        pad = "  " * depth
        entry = by_path.get(role.path)
        if role.call is not None and entry:
            click.echo(
                f"{pad}{role.path} [call] func={entry['func']} trigger={entry['trigger']} "
                f"await={entry['await']} timeout={entry['timeout']} critical={str(entry['critical']).lower()}"
            )
            continue
        if role.task is not None and entry:
            kind = "hook" if role.task.is_hook else "task"
            extra = (
                f" trigger={entry['trigger']} await={entry['await']} timeout={entry['timeout']}"
                if role.task.is_hook
                else ""
            )
            click.echo(
                f"{pad}{role.path} [{kind} {entry['class']} ({entry['control_mode']})]"
                f" host={entry['host'] or '-'} critical={str(entry['critical']).lower()}{extra}"
            )
            click.echo(f"{pad}    command: {entry['command']}")
            for key, value in entry["env"].items():
                click.echo(f"{pad}    env: {key}={value}")
            for channel in entry["bind"]:
                click.echo(f"{pad}    bind: {channel['name']} ({channel['type']}, {channel['transport']})")
            for channel in entry["connect"]:
                click.echo(
                    f"{pad}    connect: {channel['name']} ({channel['type']}) -> {channel.get('target', '')}"
                )
            continue
        label = role.kind + (f" {role.include}" if role.include else "")
        constraints = " ".join(f"{k}={v}" for k, v in role.constraints.items())
        click.echo(f"{pad}{role.path} [{label}]" + (f" constraints: {constraints}" if constraints else ""))


def _repository(location: str, state_dir: Path) -> tuple[TemplateRepository, RepoManager | None]:
    path = Path(location).expanduser()
    if path.is_dir() and not (path / ".git").exists() and not (path / "HEAD").is_file():
        return DirectoryRepository(path.resolve(), name=str(path.resolve())), None
    manager = RepoManager(state_dir)
    info = manager.add(location)
    return manager.repository(info.identifier), manager


@click.command("expand")
@click.argument("name")
@click.option("--repo", "repo", required=True, help="Repository: a directory, a git path or a URL.")
@click.option("-e", "--extra-vars", "pairs", multiple=True, help="User variable key=value (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--inventory", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="YAML inventory."
)
@click.option("--jit-fallback", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Repository of exported JIT workflows (used when O2 is not installed).")  # fmt: skip
def expand(
    name: str,
    repo: str,
    pairs: tuple[str, ...],
    as_json: bool,
    inventory: Path | None,
    jit_fallback: Path | None,
) -> None:
    """Expand workflow template NAME (`name` or `name@revision`) and show what would run."""
    user_vars = _parse_vars(pairs)
    environment_id = user_vars.setdefault("environment_id", "offline")
    providers = Providers(
        inventory=YamlInventory.from_file(inventory) if inventory else YamlInventory(), store=MemoryStore()
    )
    jit = JitRegistry(CommandGenerator(fallback=fallback_repository(jit_fallback)))
    try:
        with tempfile.TemporaryDirectory(prefix="coconut-expand-") as state:
            repository, manager = _repository(repo, Path(state))
            workflow = load_workflow(
                repository,
                name,
                user_vars,
                providers=providers,
                jit=jit,
                resolver=manager.resolver if manager else None,
            )
            document = _document(workflow, environment_id)
    except AliecsError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(document, indent=1))
    else:
        _print_tree(workflow, document)


def main() -> None:
    expand(prog_name="coconut template expand")


if __name__ == "__main__":
    main()
