"""`coconut`: the aliecs control and configuration utility (a client of the gRPC control API).

The command tree and flags follow the original AliECS coconut: `environment` (aliases `env`, `e`)
create/list/show/control/destroy/watch, `role query`, `task list/clean`, `template list`,
`repository ...`, `info`, `about`. Every command talks to the core at `--endpoint` (default
127.0.0.1:32102); listings accept `-o json`. Exit codes: 0 success, 1 the core refused or could not
be reached, 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from rich.text import Text
from rich.tree import Tree

from aliecs.cli.coconut_output import Output, event_line, format_ms, role_tree, state_text
from aliecs.cli.coconut_progress import with_progress
from aliecs.cli.coconut_template import expand as expand_command
from aliecs.environment.fsm import EVENT_NAMES, normalize_event
from aliecs.generated import common as common_pb
from aliecs.generated import o2control as pb
from aliecs.locks import describe_service_data
from aliecs.runtime import run
from aliecs.server.auth import TOKEN_ENV, TokenFileError, resolve_token
from aliecs.server.client import DEFAULT_ENDPOINT, ControlClient
from aliecs.workflow.repository import default_repository

T = TypeVar("T")
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
Optype = pb.ControlEnvironmentRequestOptype


class Unreachable(click.ClickException):
    exit_code = EXIT_FAILED


@dataclass
class Settings:
    endpoint: str
    token: str | None
    out: Output


class AliasedGroup(click.Group):
    """A group whose commands also answer to short aliases (`env ls`, `e c`, ...)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases: dict[str, str] = {}

    def alias(self, name: str, *aliases: str) -> None:
        for alias in aliases:
            self.aliases[alias] = name

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        _name, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else None), command, rest


def request_user() -> common_pb.User:
    """Who is asking, as the original's coconut names it: `login@host`."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid
        login = "unknown"
    return common_pb.User(name=f"{login}@{socket.gethostname() or 'unknown'}")


def add_aliases(group: click.Group, name: str, *aliases: str) -> None:
    assert isinstance(group, AliasedGroup)
    group.alias(name, *aliases)


def settings(ctx: click.Context) -> Settings:
    found = ctx.find_object(Settings)
    assert found is not None
    return found


def call(ctx: click.Context, work: Callable[[ControlClient], Awaitable[T]]) -> T:
    """Run `work` against the core; gRPC errors and unreachable cores become one clear line."""
    conf = settings(ctx)

    async def main() -> T:
        async with ControlClient(conf.endpoint, token=conf.token) as client:
            return await work(client)

    try:
        return run(main())
    except GRPCError as exc:
        conf.out.error(f"{exc.status.name}: {exc.message or 'no message'}")
        sys.exit(EXIT_FAILED)
    except (OSError, StreamTerminatedError) as exc:
        conf.out.error(
            f"cannot reach the core at {conf.endpoint}: {exc}; is aliecs-core running? (see --endpoint)"
        )
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def output_option(func: Callable[..., Any]) -> Callable[..., Any]:
    def set_format(ctx: click.Context, _param: click.Parameter, value: str) -> str:
        settings(ctx).out.json = value == "json"
        return value

    return click.option(
        "-o",
        "--output",
        type=click.Choice(["text", "json"]),
        default="text",
        expose_value=False,
        callback=set_format,
        help="Output format.",
    )(func)


def parse_extra_vars(text: str | None) -> dict[str, str]:
    """`k=v,k2=v2` or a JSON object."""
    if not text:
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="-e/--extra-vars") from None
        if not isinstance(data, dict):
            raise click.BadParameter("JSON extra vars must be an object", param_hint="-e/--extra-vars")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    result: dict[str, str] = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="-e/--extra-vars")
        result[key.strip()] = value.strip()
    return result


# -- the tree ------------------------------------------------------------------------------------


@click.group(cls=AliasedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--endpoint",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    envvar="COCONUT_ENDPOINT",
    help="The core's control API (host:port).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"File holding the core's bearer token (or env {TOKEN_ENV}).",
)
@click.option("--nocolor", is_flag=True, help="Plain output without colours.")
@click.option("--nospinner", is_flag=True, help="No spinner while waiting.")
@click.option("-v", "--verbose", is_flag=True, help="Say more.")
@click.pass_context
def cli(
    ctx: click.Context, endpoint: str, token_file: Path | None, nocolor: bool, nospinner: bool, verbose: bool
) -> None:
    """coconut - the aliecs control and configuration utility."""
    try:
        token = resolve_token(token_file)
    except TokenFileError as exc:
        raise click.UsageError(str(exc)) from None
    color = not nocolor and "NO_COLOR" not in os.environ
    ctx.obj = Settings(endpoint=endpoint, token=token, out=Output(color=color, spinner=not nospinner))


@cli.command()
def about() -> None:
    """Show what this tool is."""
    from importlib.metadata import version

    click.echo(f"coconut (aliecs {version('aliecs')}): control and configuration utility for aliecs")


@cli.command()
@output_option
@click.pass_context
def info(ctx: click.Context) -> None:
    """Show the core's instance, counts, detectors and integrated services."""

    async def work(client: ControlClient) -> tuple[pb.GetFrameworkInfoReply, pb.ListIntegratedServicesReply]:
        return (
            await client.stub.get_framework_info(pb.GetFrameworkInfoRequest()),
            await client.stub.get_integrated_services(pb.Empty()),
        )

    framework, services = call(ctx, work)
    out = settings(ctx).out
    if out.json:
        out.dump(
            {"framework": framework.to_dict(include_default_values=True), "services": services.to_dict()}
        )
        return
    out.block(
        [
            ("instance name", framework.instance_name),
            ("core version", f"{framework.version.product_name} {framework.version.version_str}"),
            ("framework id", framework.framework_id),
            ("endpoint", settings(ctx).endpoint),
            ("configuration endpoint", framework.configuration_endpoint or "-"),
            ("environments count", framework.environments_count),
            ("active tasks count", framework.tasks_count),
            ("hosts count", framework.hosts_count),
            ("global state", state_text(framework.state)),
            ("detectors", ", ".join(framework.detectors_in_instance) or "none"),
            ("active detectors", ", ".join(framework.active_detectors) or "none"),
            ("available detectors", ", ".join(framework.available_detectors) or "none"),
        ]
    )
    if services.services:
        out.table(
            ["service", "enabled", "endpoint", "connection", "data"],
            [
                (s.name or key, s.enabled, s.endpoint, s.connection_state, s.data)
                for key, s in sorted(services.services.items())
            ],
        )
    else:
        out.print("integrated services: none")


# -- environments --------------------------------------------------------------------------------


@cli.group(cls=AliasedGroup)
def environment() -> None:
    """Create, list, show, control and destroy environments (aliases: env, e)."""


add_aliases(cli, "environment", "env", "e")


def _env_block(out: Output, env: pb.EnvironmentInfo, public: bool | None = None) -> None:
    pairs: list[tuple[str, Any]] = [
        ("environment id", env.id),
        ("workflow template", env.root_role),
        ("description", env.description or "-"),
        ("created", format_ms(env.created_when)),
        ("state", state_text(env.state)),
        ("transition", env.current_transition or "-"),
        ("controlled by", describe_service_data(env.integrated_services_data) or "nobody"),
    ]
    if public is not None:
        pairs.append(("public", public))
    pairs += [
        ("run number", _run_number_text(env)),
        ("number of hosts", env.number_of_hosts),
        ("number of tasks", f"{env.number_of_tasks} ({env.number_of_active_tasks} active)"),
        ("detectors", ", ".join(env.included_detectors) or "none"),
    ]
    if env.error:
        pairs.append(("error", Text(env.error, style="red")))
    out.block(pairs)
    failed = [task for task in env.tasks if task.error]
    for task in failed:
        out.print(
            Text(
                f"task {task.name} [{task.task_id}] on {task.deployment_info.hostname or '-'}: ", style="bold"
            )
        )
        out.print(Text("  " + task.error, style="red"))
    if failed:
        out.print(f"(their output: coconut task log TASK_ID; e.g. coconut task log {failed[0].task_id})")


def _run_number_text(env: pb.EnvironmentInfo) -> str:
    """The current run, or the last one once it ended (a STOP keeps its number readable)."""
    if env.current_run_number:
        return str(env.current_run_number)
    if env.last_run_number:
        return f"- (last run: {env.last_run_number})"
    return "-"


@environment.command("create")
@click.option("-w", "--workflow-template", "workflow", required=True, help="Workflow template to load.")
@click.option("-e", "--extra-vars", default=None, help="Variables: k=v,k2=v2 or a JSON object.")
@click.option(
    "-c", "--configuration", default=None, help="High-level configuration payload (not available yet)."
)
@click.option(
    "-p", "--public/--private", "public", default=True, show_default=True, help="Public environment."
)
@click.option("-a", "--auto", is_flag=True, help="Run one full cycle automatically and stream its events.")
@click.option(
    "-y", "--asynchronous", is_flag=True, help="Return at once; the environment is created meanwhile."
)
@output_option
@click.pass_context
def env_create(
    ctx: click.Context,
    workflow: str,
    extra_vars: str | None,
    configuration: str | None,
    public: bool,
    auto: bool,
    asynchronous: bool,
) -> None:
    """Create an environment: DEPLOY and CONFIGURE it (aliases: new, c, n)."""
    out = settings(ctx).out
    if configuration:
        raise click.UsageError(
            "-c/--configuration payloads need the configuration service, not available yet"
        )
    user_vars = parse_extra_vars(extra_vars)
    if auto:
        subscription = f"coconut-{uuid.uuid4().hex[:12]}"

        async def run_auto(client: ControlClient) -> None:
            await client.stub.new_auto_environment(
                pb.NewAutoEnvironmentRequest(
                    workflow_template=workflow, vars=user_vars, id=subscription, request_user=request_user()
                )
            )
            if not out.json:
                out.errors.print(
                    "auto sequence: DEPLOY, CONFIGURE, START, then the run lasts until its tasks end it"
                )
                out.errors.print(
                    "(Ctrl-C stops the sequence: the core then stops the run and destroys the environment)"
                )
            # Closed here, on Ctrl-C too, while the channel is still open: left to the loop's
            # shutdown, the stream's cleanup would run after the channel closed and could hang.
            async with contextlib.aclosing(client.subscribe(subscription)) as events:
                async for event in events:
                    out.dump(event) if out.json else out.print(event_line(event))

        try:
            call(ctx, run_auto)
        except SystemExit as exc:
            if exc.code == EXIT_INTERRUPTED:
                out.errors.print("interrupted: the core stops the auto sequence and destroys its environment")
            raise
        return
    request = pb.NewEnvironmentRequest(
        workflow_template=workflow, vars=user_vars, public=public, request_user=request_user()
    )

    async def create(client: ControlClient) -> pb.NewEnvironmentReply:
        if asynchronous:
            return await client.stub.new_environment_async(request)
        with out.waiting(f"creating environment from {workflow}..."):
            return await client.stub.new_environment(request)

    reply = call(ctx, create)
    if out.json:
        out.dump(reply)
        return
    out.print("new environment requested" if asynchronous else "new environment created")
    _env_block(out, reply.environment, reply.public)
    env = reply.environment
    for title, values in (
        ("global defaults", env.defaults),
        ("global variables", env.vars),
        ("user-provided variables", env.user_vars),
    ):
        if values:  # as the original prints them: sorted, tab-indented, <empty> for ""
            lines = sorted(f"\t{key}: {value or '<empty>'}" for key, value in values.items())
            out.print(f"{title}:\n" + "\n".join(lines))


add_aliases(environment, "create", "new", "c", "n")


@environment.command("list")
@click.option("-s", "--show-all", is_flag=True, help="Include private environments.")
@output_option
@click.pass_context
def env_list(ctx: click.Context, show_all: bool) -> None:
    """List environments (aliases: ls, l)."""
    reply = call(ctx, lambda c: c.stub.get_environments(pb.GetEnvironmentsRequest(show_all=show_all)))
    out = settings(ctx).out
    if out.json:
        out.dump(reply.environments)
        return
    if not reply.environments:
        out.print("no environments running")
        return
    out.table(
        ["id", "workflow template", "created", "state", "run number"],
        [
            (e.id, e.root_role, format_ms(e.created_when), state_text(e.state), e.current_run_number or "-")
            for e in reply.environments
        ],
    )


add_aliases(environment, "list", "ls", "l")


def _task_rows(tasks: list[pb.ShortTaskInfo]) -> list[tuple[Any, ...]]:
    return [
        (
            t.task_id,
            t.name,
            t.class_name,
            t.deployment_info.hostname,
            "yes" if t.locked else "no",
            "yes" if t.claimable else "no",
            "yes" if t.critical else "no",
            state_text(t.status),
            state_text(t.state),
            t.pid or "-",
        )
        for t in tasks
    ]


#: How often `task log -f` asks for new output.
FOLLOW_INTERVAL = 0.5

TASK_COLUMNS = [
    "task id",
    "name",
    "class name",
    "hostname",
    "locked",
    "claimable",
    "crit",
    "status",
    "state",
    "PID",
]


@environment.command("show")
@click.argument("env_id", metavar="ID")
@click.option("-t", "--tasks", "show_tasks", is_flag=True, help="List the environment's tasks.")
@click.option("-w", "--workflow", "show_workflow", is_flag=True, help="Show the workflow as a tree.")
@click.option("-s", "--services", is_flag=True, help="Show integrated services data.")
@output_option
@click.pass_context
def env_show(ctx: click.Context, env_id: str, show_tasks: bool, show_workflow: bool, services: bool) -> None:
    """Show one environment (aliases: get, s, g)."""
    request = pb.GetEnvironmentRequest(id=env_id, show_workflow_tree=show_workflow)
    reply = call(ctx, lambda c: c.stub.get_environment(request))
    out = settings(ctx).out
    if out.json:
        out.dump(reply)
        return
    env = reply.environment
    _env_block(out, env, reply.public)
    out.mapping("defaults", env.defaults)
    out.mapping("vars", env.vars)
    out.mapping("user vars", env.user_vars)
    if services:
        out.mapping("integrated services", env.integrated_services_data)
    if show_tasks:
        out.table(TASK_COLUMNS, _task_rows(env.tasks), title=f"tasks ({len(env.tasks)})")
    if show_workflow:
        out.print(Text("workflow:", style="bold"))
        out.print(role_tree(reply.workflow, {t.task_id: t for t in env.tasks}, env.state))


add_aliases(environment, "show", "get", "s", "g")


@environment.command("control")
@click.argument("env_id", metavar="ID")
@click.option(
    "-e",
    "--event",
    required=True,
    help="CONFIGURE, RESET, START_ACTIVITY (START), STOP_ACTIVITY (STOP), DEPLOY or GO_ERROR.",
)
@output_option
@click.pass_context
def env_control(ctx: click.Context, env_id: str, event: str) -> None:
    """Run one transition on an environment (aliases: ctl, ct, t)."""
    name = event.strip().upper()
    if name not in EVENT_NAMES:
        raise click.BadParameter(
            f"unknown event {event!r}; use one of {', '.join(EVENT_NAMES)}", param_hint="-e"
        )
    out = settings(ctx).out
    request = pb.ControlEnvironmentRequest(
        id=env_id, type=Optype.from_string(EVENT_NAMES[name]), request_user=request_user()
    )

    async def control(client: ControlClient) -> pb.ControlEnvironmentReply:
        with out.waiting(f"transition {name} in progress...") as show:
            return await with_progress(
                client, env_id, normalize_event(name), show, lambda: client.stub.control_environment(request)
            )

    reply = call(ctx, control)
    if out.json:
        out.dump(reply)
        return
    out.print(f"transition {name} complete")
    out.block(
        [
            ("environment id", reply.id),
            ("state", state_text(reply.state)),
            ("run number", reply.current_run_number or "-"),
            ("transition start", format_ms(reply.start_of_transition)),
            ("transition end", format_ms(reply.end_of_transition)),
            ("duration", f"{reply.transition_duration} ms"),
        ]
    )


add_aliases(environment, "control", "ctl", "ct", "t")


Operation = pb.EnvironmentOperationOptype


def parse_scale(text: str) -> tuple[str, int]:
    """`PATH=N` of --scale."""
    path, sep, count = text.partition("=")
    if not sep or not path.strip() or not count.strip().isdigit():
        raise click.BadParameter(f"{text!r} is not PATH=N (e.g. copypush.sink=5)", param_hint="--scale")
    return path.strip(), int(count)


@environment.command("modify")
@click.argument("env_id", metavar="ID")
@click.option(
    "--exclude", "excludes", multiple=True, metavar="PATH", help="Exclude a role subtree (repeatable)."
)
@click.option(
    "--include", "includes", multiple=True, metavar="PATH", help="Include an excluded subtree again."
)
@click.option("--scale", "scales", multiple=True, metavar="PATH=N", help="Make an iterator generate N roles.")
@click.option("-e", "--extra-vars", "extra_vars", multiple=True, help="New variables: k=v,k2=v2 or JSON.")
@click.option("--reconfigure-all", is_flag=True, help="RESET and CONFIGURE every task (CONFIGURED only).")
@click.option("--restart", is_flag=True, help="Restart tasks whose command line the new variables change.")
@click.option("--allow-running", is_flag=True, help="Exclude or include critical subtrees during a run.")
@output_option
@click.pass_context
def env_modify(
    ctx: click.Context,
    env_id: str,
    excludes: tuple[str, ...],
    includes: tuple[str, ...],
    scales: tuple[str, ...],
    extra_vars: tuple[str, ...],
    reconfigure_all: bool,
    restart: bool,
    allow_running: bool,
) -> None:
    """Change a deployed environment in place: excludes, then includes, then scales, then
    variables (aliases: mod, m). Processes of untouched tasks are kept."""
    operations = [
        pb.EnvironmentOperation(type=Operation(Operation.REMOVE_ROLE), role_name=path) for path in excludes
    ]
    operations += [
        pb.EnvironmentOperation(type=Operation(Operation.ADD_ROLE), role_name=path) for path in includes
    ]
    for text in scales:
        path, count = parse_scale(text)
        operations.append(
            pb.EnvironmentOperation(type=Operation(Operation.SCALE_ROLE), role_name=path, count=count)
        )
    variables: dict[str, str] = {}
    for text in extra_vars:
        variables.update(parse_extra_vars(text))
    if not (operations or variables or reconfigure_all):
        raise click.UsageError(
            "nothing to change: give --exclude, --include, --scale, -e or --reconfigure-all"
        )
    request = pb.ModifyEnvironmentRequest(
        id=env_id,
        operations=operations,
        reconfigure_all=reconfigure_all,
        vars=variables,
        restart_changed=restart,
        allow_running=allow_running,
        request_user=request_user(),
    )
    out = settings(ctx).out
    reply = call(ctx, lambda c: c.stub.modify_environment(request))
    if out.json:
        out.dump(reply)
    elif not reply.error:
        out.print(f"environment {reply.id} modified")
        out.block([("environment id", reply.id), ("state", state_text(reply.state))])
    if reply.error:
        not_applied = ", ".join(f"{op.type.name} {op.role_name}" for op in reply.failed_operations)
        if not_applied:
            out.error(f"not applied: {not_applied}")
        if reply.restart_needed:
            out.error(f"need a restart (--restart): {', '.join(reply.restart_needed)}")
        out.error(reply.error)
        sys.exit(EXIT_FAILED)


add_aliases(environment, "modify", "mod", "m")


@environment.command("destroy")
@click.argument("env_id", metavar="ID")
@click.option("-k", "--keep-tasks", is_flag=True, help="Keep the tasks running (not supported by aliecs).")
@click.option("-a", "--allow-in-running-state", is_flag=True, help="Stop the run first if one is ongoing.")
@click.option("-f", "--force", is_flag=True, help="Tear down even if the orderly transitions fail.")
@output_option
@click.pass_context
def env_destroy(
    ctx: click.Context, env_id: str, keep_tasks: bool, allow_in_running_state: bool, force: bool
) -> None:
    """Tear an environment down and kill its tasks (aliases: des, d)."""
    out = settings(ctx).out
    request = pb.DestroyEnvironmentRequest(
        id=env_id,
        keep_tasks=keep_tasks,
        allow_in_running_state=allow_in_running_state,
        force=force,
        request_user=request_user(),
    )

    async def destroy(client: ControlClient) -> pb.DestroyEnvironmentReply:
        with out.waiting(f"destroying environment {env_id}...") as show:
            return await with_progress(
                client, env_id, "DESTROY", show, lambda: client.stub.destroy_environment(request)
            )

    reply = call(ctx, destroy)
    if out.json:
        out.dump(reply)
        return
    killed = reply.cleanup_tasks_reply.killed_tasks
    out.print(f"teardown complete for environment {env_id}: {len(killed)} task(s) killed")


add_aliases(environment, "destroy", "des", "d")


@environment.command("watch")
@click.argument("env_id", metavar="ID", required=False, default="")
@output_option
@click.pass_context
def env_watch(ctx: click.Context, env_id: str) -> None:
    """Print an environment's events live until it is destroyed (no ID: every event)."""
    out = settings(ctx).out

    async def watch(client: ControlClient) -> None:
        async with contextlib.aclosing(client.subscribe(env_id)) as events:  # see `env_create`
            async for event in events:
                if out.json:
                    sys.stdout.write(json.dumps(event.to_dict()) + "\n")
                    sys.stdout.flush()
                else:
                    out.print(event_line(event))

    call(ctx, watch)


# -- roles, tasks --------------------------------------------------------------------------------


@cli.group(cls=AliasedGroup)
def role() -> None:
    """Query the roles of an environment (alias: r)."""


add_aliases(cli, "role", "r")


@role.command("query")
@click.argument("env_id", metavar="ENV_ID")
@click.argument("path", metavar="PATH_GLOB", default="*")
@output_option
@click.pass_context
def role_query(ctx: click.Context, env_id: str, path: str) -> None:
    """Show the role subtrees matching PATH_GLOB (`.` separated, `*`, `**`) with their variables."""
    reply = call(ctx, lambda c: c.stub.get_roles(pb.GetRolesRequest(env_id=env_id, path_spec=path)))
    out = settings(ctx).out
    if out.json:
        out.dump(reply.roles)
        return
    if not reply.roles:
        out.print(f"no role matches {path!r} in environment {env_id}")
        return
    for found in reply.roles:
        out.print(Text(found.full_path, style="bold underline"))
        out.print(role_tree(found))
        out.mapping("defaults", found.defaults)
        out.mapping("vars", found.vars)
        out.mapping("user vars", found.user_vars)
        out.mapping("consolidated stack", found.consolidated_stack)


add_aliases(role, "query", "q")


@cli.group(cls=AliasedGroup)
def task() -> None:
    """List and clean up tasks (alias: t)."""


add_aliases(cli, "task", "t")


@task.command("list")
@output_option
@click.pass_context
def task_list(ctx: click.Context) -> None:
    """List every task (alias: ls)."""
    reply = call(ctx, lambda c: c.stub.get_tasks(pb.GetTasksRequest()))
    out = settings(ctx).out
    if out.json:
        out.dump(reply.tasks)
        return
    if not reply.tasks:
        out.print("no tasks running")
        return
    columns = [f"task id ({len(reply.tasks)})", *TASK_COLUMNS[1:]]
    out.table(columns, _task_rows(reply.tasks))


add_aliases(task, "list", "ls", "l")


@task.command("log")
@click.argument("task_id")
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing new output until the task ends (Ctrl-C stops)."
)
@click.option(
    "-n",
    "--bytes",
    "tail_bytes",
    default=16384,
    show_default=True,
    help="Start this many bytes before the end (0: from the beginning).",
)
@click.pass_context
def task_log(ctx: click.Context, task_id: str, follow: bool, tail_bytes: int) -> None:
    """Print a task's output (stdout and stderr), optionally following it."""
    out = settings(ctx).out

    async def read(client: ControlClient) -> None:
        offset = -abs(tail_bytes) if tail_bytes else 0
        seen = False
        while True:
            try:
                reply = await client.stub.get_task_log(pb.GetTaskLogRequest(task_id=task_id, offset=offset))
            except GRPCError as exc:
                if seen and exc.status == Status.NOT_FOUND:  # destroyed with its environment meanwhile
                    out.errors.print(f"(task {task_id} is gone)")
                    return
                raise
            seen = True
            if reply.data:
                click.echo(reply.data, nl=False)
            offset = reply.next_offset
            if not reply.data and (not follow or not reply.task_active):
                if not reply.path:
                    out.errors.print(f"(task {task_id} has no output file)")
                break
            if not reply.data:
                await asyncio.sleep(FOLLOW_INTERVAL)  # poll: the log is a file that grows

    call(ctx, read)


add_aliases(task, "log", "logs")


@task.command("clean")
@click.argument("task_ids", nargs=-1)
@output_option
@click.pass_context
def task_clean(ctx: click.Context, task_ids: tuple[str, ...]) -> None:
    """Kill idle tasks (all of them, or those given) (aliases: cleanup, cl)."""
    reply = call(ctx, lambda c: c.stub.cleanup_tasks(pb.CleanupTasksRequest(task_ids=list(task_ids))))
    out = settings(ctx).out
    if out.json:
        out.dump(reply)
        return
    if reply.killed_tasks:
        out.table(
            TASK_COLUMNS, _task_rows(reply.killed_tasks), title=f"killed tasks ({len(reply.killed_tasks)})"
        )
    else:
        out.print("no idle task to kill")
    if reply.running_tasks:
        out.print(
            f"{len(reply.running_tasks)} task(s) still running: they belong to environments; "
            "use `coconut env destroy` to stop them"
        )


add_aliases(task, "clean", "cleanup", "cl")


# -- templates and repositories ------------------------------------------------------------------


@cli.group(cls=AliasedGroup)
def template() -> None:
    """Workflow templates (alias: templ)."""


add_aliases(cli, "template", "templ")


@template.command("list")
@click.argument("pattern", required=False, default="")
@click.option("-r", "--repository", "repo_pattern", default="", help="Repository name pattern.")
@click.option("-i", "--revision", "revision_pattern", default="", help="Revision pattern.")
@click.option("-b", "--all-branches", is_flag=True, help="Look in every branch.")
@click.option("-t", "--all-tags", is_flag=True, help="Look in every tag.")
@click.option("-a", "--all-workflows", is_flag=True, help="Include non-public workflows.")
@click.option("-d", "--show-description", is_flag=True, help="Show each template's description.")
@output_option
@click.pass_context
def template_list(
    ctx: click.Context,
    pattern: str,
    repo_pattern: str,
    revision_pattern: str,
    all_branches: bool,
    all_tags: bool,
    all_workflows: bool,
    show_description: bool,
) -> None:
    """List workflow templates as a tree: repository -> revision -> template.

    PATTERN is `[repo-pattern][@revision-pattern]`. Asks the core; when no core is reachable it lists
    the local default repository instead.
    """
    if pattern:
        repo_part, _sep, rev_part = pattern.partition("@")
        repo_pattern = repo_pattern or repo_part
        revision_pattern = revision_pattern or rev_part
    out = settings(ctx).out
    request = pb.GetWorkflowTemplatesRequest(
        repo_pattern=repo_pattern,
        revision_pattern=revision_pattern,
        all_branches=all_branches,
        all_tags=all_tags,
        all_workflows=all_workflows,
    )
    conf = settings(ctx)

    async def ask(client: ControlClient) -> pb.GetWorkflowTemplatesReply:
        return await client.stub.get_workflow_templates(request)

    async def main() -> tuple[pb.GetWorkflowTemplatesReply, int]:
        async with ControlClient(conf.endpoint, token=conf.token, timeout=10) as client:
            reply = await ask(client)
            if all_workflows or out.json:
                return reply, 0
            # say how many non-public templates the listing leaves out, rather than nothing
            request.all_workflows = True
            everything = await ask(client)
            return reply, len(everything.workflow_templates) - len(reply.workflow_templates)

    hidden = 0
    try:
        reply, hidden = run(main())
        templates = reply.workflow_templates
    except (OSError, StreamTerminatedError):
        repository = default_repository()
        out.errors.print(f"(no core at {conf.endpoint}: listing the local repository {repository.root})")
        revision = str(getattr(repository, "revision", "local"))
        templates = [
            pb.WorkflowTemplateInfo(repo=repository.name, template=name, revision=revision)
            for name in repository.list_workflows()
        ]
    except GRPCError as exc:
        out.error(f"{exc.status.name}: {exc.message}")
        sys.exit(EXIT_FAILED)
    if out.json:
        out.dump(templates)
        return
    hint = f"({hidden} non-public template(s) not shown; -a lists them)" if hidden > 0 else ""
    if not templates:
        out.print("no public workflow templates found" if hidden else "no workflow templates found")
        if hint:
            out.print(hint)
        return
    tree = Tree(Text("workflow templates", style="bold"))
    repos: dict[str, Tree] = {}
    revisions: dict[tuple[str, str], Tree] = {}
    for info in templates:
        repo_branch = repos.get(info.repo) or repos.setdefault(
            info.repo, tree.add(Text(info.repo, style="bold"))
        )
        key = (info.repo, info.revision)
        rev_branch = revisions.get(key) or revisions.setdefault(
            key, repo_branch.add(Text(info.revision or "-"))
        )
        label = Text(info.template, style="cyan")
        if show_description and info.description:
            label.append(f"  {info.description}", style="dim")
        rev_branch.add(label)
    out.print(tree)
    if hint:
        out.print(hint)


add_aliases(template, "list", "ls", "l")


# `template expand` lives in its own module: offline expansion, no core needed.
template.add_command(expand_command)


@cli.group(cls=AliasedGroup)
def repository() -> None:
    """Configuration repositories of the core (alias: repo)."""


add_aliases(cli, "repository", "repo")


@repository.command("list")
@click.option("-r", "--revisions", is_flag=True, help="Also list each repository's branches and tags.")
@output_option
@click.pass_context
def repo_list(ctx: click.Context, revisions: bool) -> None:
    """List the repositories; ID is what remove/refresh/default take (alias: ls)."""
    reply = call(ctx, lambda c: c.stub.list_repos(pb.ListReposRequest(get_revisions=revisions)))
    out = settings(ctx).out
    if out.json:
        out.dump(reply)
        return
    columns = ["id", "repository", "default", "default revision"]
    rows: list[tuple[Any, ...]] = [
        (i, r.name, "yes" if r.default else "", r.default_revision) for i, r in enumerate(reply.repos)
    ]
    if revisions:
        columns.append("revisions")
        rows = [(*row, ", ".join(r.revisions)) for row, r in zip(rows, reply.repos, strict=True)]
    out.table(columns, rows)
    out.print(f"global default revision: {reply.global_default_revision}")


add_aliases(repository, "list", "ls", "l")


@repository.command("add")
@click.argument("repo")
@click.option("-d", "--default-revision", default="", help="Revision to use by default (must exist).")
@click.pass_context
def repo_add(ctx: click.Context, repo: str, default_revision: str) -> None:
    """Add a repository: `host/path` (https), `host:path` (ssh) or an absolute local path."""
    request = pb.AddRepoRequest(name=repo, default_revision=default_revision)

    async def add(client: ControlClient) -> pb.AddRepoReply:
        with settings(ctx).out.waiting(f"cloning {repo}..."):
            return await client.stub.add_repo(request)

    reply = call(ctx, add)
    settings(ctx).out.print(f"repository added: {reply.info}")


add_aliases(repository, "add", "new", "a")


@repository.command("remove")
@click.argument("index", type=int)
@click.pass_context
def repo_remove(ctx: click.Context, index: int) -> None:
    """Remove a repository by ID (alias: del)."""
    reply = call(ctx, lambda c: c.stub.remove_repo(pb.RemoveRepoRequest(index=index)))
    settings(ctx).out.print(f"repository {index} removed; default repository: {reply.new_default_repo}")


add_aliases(repository, "remove", "r", "delete", "del", "d")


@repository.command("refresh")
@click.argument("index", type=int, required=False, default=-1)
@click.pass_context
def repo_refresh(ctx: click.Context, index: int) -> None:
    """Fetch new commits of one repository (by ID) or of all of them."""

    async def refresh(client: ControlClient) -> pb.Empty:
        with settings(ctx).out.waiting("fetching..."):
            return await client.stub.refresh_repos(pb.RefreshReposRequest(index=index))

    call(ctx, refresh)
    settings(ctx).out.print("repositories refreshed" if index < 0 else f"repository {index} refreshed")


add_aliases(repository, "refresh", "update", "u")


@repository.command("default")
@click.argument("index", type=int)
@click.pass_context
def repo_default(ctx: click.Context, index: int) -> None:
    """Make a repository (by ID) the default one: plain workflow names resolve in it."""
    call(ctx, lambda c: c.stub.set_default_repo(pb.SetDefaultRepoRequest(index=index)))
    settings(ctx).out.print(f"repository {index} is now the default")


@repository.command("default-revision")
@click.argument("args", nargs=-1, required=True, metavar="[INDEX] REVISION")
@click.pass_context
def repo_default_revision(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Set the global default revision (REVISION) or one repository's (INDEX REVISION)."""
    out = settings(ctx).out
    if len(args) == 1:
        request = pb.SetGlobalDefaultRevisionRequest(revision=args[0])
        call(ctx, lambda c: c.stub.set_global_default_revision(request))
        out.print(f"global default revision: {args[0]}")
    elif len(args) == 2 and args[0].isdigit():
        repo_request = pb.SetRepoDefaultRevisionRequest(index=int(args[0]), revision=args[1])
        reply = call(ctx, lambda c: c.stub.set_repo_default_revision(repo_request))
        if reply.info:  # the revisions the repository has: the requested one is not among them
            out.error(f"Operation failed.\n\nAvailable revisions for this repo:\n{reply.info}")
            sys.exit(EXIT_FAILED)
        out.print(f'The default revision for this repo has been successfully updated to "{args[1]}".')
    else:
        raise click.UsageError("give REVISION, or INDEX REVISION (INDEX from `coconut repository list`)")


def main() -> None:
    cli()
