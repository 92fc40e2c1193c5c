"""``peanut``: drive one OCC process by hand, without a core or an executor.

Process authors use it to check their state machine: ask for the state, request transitions with
arguments, and watch the event and state streams. Each command is one short-lived client; exit codes
are meant for scripts: 0 success, 1 the process refused or failed the request (or could not be
reached), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from aliecs.cli.peanut_config import ConfigError, load_config
from aliecs.durations import parse_duration
from aliecs.occ.client import OccClient, Subscription, parse_address
from aliecs.occ.errors import OccError
from aliecs.occ.server import CONTROL_PORT_ENV, DEFAULT_CONTROL_PORT
from aliecs.runtime import run

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def default_address() -> str:
    """``localhost:$OCC_CONTROL_PORT``, the port the process itself would pick, else localhost:47100."""
    port = os.environ.get(CONTROL_PORT_ENV, "").strip() or str(DEFAULT_CONTROL_PORT)
    return f"localhost:{port}"


def _run(client: OccClient, work: Callable[[OccClient], Coroutine[Any, Any, int]]) -> None:
    """Run one command on its own event loop and exit with its code; OccError becomes a one-line error."""

    async def main() -> int:
        try:
            return await work(client)
        finally:
            await client.close()

    try:
        code = run(main())
    except OccError as exc:
        click.echo(f"peanut: error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code)


def _parse_arguments(pairs: tuple[str, ...]) -> dict[str, str]:
    args: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="ARGUMENTS")
        args[key] = value
    return args


# The original's `transition FROM_STATE TO_STATE`: which OCC event leads from one state to the other.
_EVENT_BETWEEN = {
    ("STANDBY", "CONFIGURED"): "CONFIGURE",
    ("CONFIGURED", "STANDBY"): "RESET",
    ("CONFIGURED", "RUNNING"): "START",
    ("RUNNING", "CONFIGURED"): "STOP",
    ("ERROR", "STANDBY"): "RECOVER",
    ("STANDBY", "DONE"): "EXIT",
    ("CONFIGURED", "DONE"): "EXIT",
    ("ERROR", "DONE"): "EXIT",
}
_EVENTS = {"CONFIGURE", "RESET", "START", "STOP", "RECOVER", "EXIT"}
_STATES = {state for pair in _EVENT_BETWEEN for state in pair}


def event_for(src_state: str, target: str) -> str:
    """`target` is an event (aliecs' form) or, as in the original, the state to reach."""
    name = target.strip().upper()
    if name in _EVENTS:
        return name
    event = _EVENT_BETWEEN.get((src_state.strip().upper(), name))
    if event is None:
        if name in _STATES:
            raise click.BadParameter(
                f"no transition leads from {src_state} to {target}", param_hint="FROM TO"
            )
        choices = ", ".join(sorted(_EVENTS | _STATES))
        raise click.BadParameter(f"{target!r} is neither an event nor a state ({choices})", param_hint="TO")
    return event


def _timeout(value: str) -> float:
    """`30`, `2.5` or a duration as the original writes it (`30s`, `1m`)."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}", param_hint="-timeout") from None
    if seconds <= 0:
        raise click.BadParameter(f"{value!r} must be positive", param_hint="-timeout")
    return seconds


class _Settings:
    def __init__(self, client: OccClient, config: Path | None) -> None:
        self.client = client
        self.config = config


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
)
@click.option(
    "--addr",
    "-addr",
    default=default_address,
    show_default=f"localhost:${CONTROL_PORT_ENV} or localhost:{DEFAULT_CONTROL_PORT}",
    help="host:port of the process's OCC server",
)
@click.option(
    "--timeout",
    "-timeout",
    default="30",
    show_default=True,
    help="seconds (or a duration: 30s, 1m) to wait for an answer (stream commands: the subscription only)",
)
@click.option(
    "--config",
    "-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML/JSON configuration (flattened to dotted keys): pushed at CONFIGURE in the interactive "
    "mode, sent as `transition` arguments in the command mode (KEY=VALUE arguments win)",
)
@click.option(
    "--mode",
    "-mode",
    type=click.Choice(["direct", "fmq", "fmq-step"]),
    default="direct",
    show_default=True,
    help="protocol of the process: only `direct` (OCC over protobuf) is available",
)
@click.pass_context
def cli(ctx: click.Context, addr: str, timeout: str, config: Path | None, mode: str) -> None:
    """Process Execution And coNtrol UTility: talk OCC (occ_pb.Occ) to one process.

    Without a command, opens the interactive mode (buttons per transition, state polled).
    Flags are accepted with one dash as in the original (`-addr`, `-timeout`, `-config`, `-mode`).
    """
    if mode != "direct":
        raise click.BadParameter(
            f"{mode}: FairMQ processes (JSON codec) are not supported yet; use -mode direct",
            param_hint="-mode",
        )
    try:
        host, port = parse_address(addr)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--addr") from None
    client = OccClient(host, port, timeout=_timeout(timeout))
    ctx.obj = _Settings(client, config)
    if ctx.invoked_subcommand is None:
        from aliecs.cli.peanut_tui import run_tui

        run_tui(client, config)


@cli.command("get-state")
@click.pass_obj
def get_state(settings: _Settings) -> None:
    """Print the process's state and pid."""
    client = settings.client

    async def work(client: OccClient) -> int:
        state, pid = await client.get_state()
        click.echo(f"{state} pid={pid}")
        return 0

    _run(client, work)


@cli.command("transition")
@click.argument("src_state", metavar="FROM")
@click.argument("target", metavar="TO")
@click.argument("arguments", nargs=-1, metavar="[KEY=VALUE]...")
@click.pass_obj
def transition(settings: _Settings, src_state: str, target: str, arguments: tuple[str, ...]) -> None:
    """Go from state FROM to state TO (or request event TO), passing KEY=VALUE transition arguments
    on top of those of -config.

    Examples: peanut -addr localhost:47100 transition STANDBY CONFIGURED chans.data.0.address=tcp://127.0.0.1:5555
              peanut transition CONFIGURED START
    """
    event = event_for(src_state, target)
    args: dict[str, str] = {}
    if settings.config is not None:
        try:
            args.update(load_config(settings.config))
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="-config") from None
    args.update(_parse_arguments(arguments))

    async def work(client: OccClient) -> int:
        result = await client.transition(src_state, event, args)
        line = f"{result.event}: {src_state} -> {result.state} (trigger {result.trigger})"
        if result.ok:
            click.echo(f"{line} ok")
            return 0
        click.echo(f"{line} FAILED: the process ended in {result.state}", err=True)
        return EXIT_FAILED

    _run(settings.client, work)


def _follow(subscribe: Callable[[OccClient], Subscription[str]], what: str) -> Callable[[OccClient], Any]:
    async def work(client: OccClient) -> int:
        async with subscribe(client) as items:
            # Printed only once the process has registered us, so a script (or a test) reading stderr
            # knows that nothing emitted from now on can be missed.
            click.echo(f"following {what} of {client.address} (Ctrl-C to stop)", err=True)
            async for item in items:
                click.echo(item)
        click.echo(f"{what} ended by the process", err=True)
        return 0

    return work


@cli.command("event-stream")
@click.pass_obj
def event_stream(settings: _Settings) -> None:
    """Print device events (END_OF_STREAM, TASK_INTERNAL_ERROR, ...) as the process emits them."""
    _run(settings.client, _follow(lambda c: c.subscribe_events(), "device events"))


@cli.command("state-stream")
@click.pass_obj
def state_stream(settings: _Settings) -> None:
    """Print the process's state each time it changes."""
    _run(settings.client, _follow(lambda c: c.subscribe_states(), "state changes"))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``peanut`` console script."""
    cli.main(args=argv, prog_name="peanut")


if __name__ == "__main__":
    main()
