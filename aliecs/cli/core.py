"""`aliecs-core`: the control system as a long-running process, serving the gRPC control API and
the web page with its REST API (127.0.0.1:8080 by default, `--http-port`).

It runs the embedded local cluster and `o2control.Control` (on 127.0.0.1:32102 by default) until
SIGTERM or SIGINT, then shuts down in order, one printed line per step: stop accepting requests,
STOP running environments, RESET configured ones, EXIT and kill what remains, stop the actor tree.
It exits 0 when no task process is left. Listening on anything but loopback requires a token.

Task processes belong to the executors (one `aliecs-executor` per node), not to the core, and the
core journals its environments: after a crash (or SIGUSR1, the way to stop or upgrade the core during
a run) the executors keep every task running for `--failover-timeout` seconds, and `aliecs-core`
started again on the same state directory restores every environment with its run and its tasks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
from pathlib import Path

import click

from aliecs.api import Core, Environment, default_state_dir
from aliecs.environment import fsm as states
from aliecs.environment.runnumber import RunNumberStoreError
from aliecs.executor.service import DEFAULT_FAILOVER_TIMEOUT
from aliecs.integrations import Plugin, PluginConfigError, PluginSettings, load_plugins
from aliecs.mesos.scheduler_api import SubscriptionError, scheduler_url
from aliecs.runtime import run
from aliecs.server import ControlServer
from aliecs.server.auth import TOKEN_ENV, TokenFileError, TokenRequiredError, resolve_token
from aliecs.server.corelog import LEVELS, TransitionLog, configure_logging
from aliecs.server.service import DEFAULT_HOST, DEFAULT_PORT
from aliecs.server.sinks import KafkaSink
from aliecs.web import DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT, WebServer

EXIT_USAGE = 2


def say(message: str) -> None:
    click.echo(f"aliecs-core: {message}", nl=True)
    sys.stdout.flush()


async def _wind_down(env: Environment) -> None:
    """Destroy one environment, saying the steps its teardown takes; errors are reported, not raised.

    The steps themselves (STOP_ACTIVITY, RESET, EXIT as the state needs, then kill what is left) are
    the environment's own teardown (`Environment.destroy`): this only announces them.
    """
    if env.state == states.RUNNING:
        say(f"environment {env.id}: STOP_ACTIVITY (run {env.run_number})")
    if env.state in (states.RUNNING, states.CONFIGURED):
        say(f"environment {env.id}: RESET")
    say(f"environment {env.id}: EXIT and kill its {len(env.tasks)} task(s)")
    try:
        await env.destroy(allow_running=True)
    except Exception as exc:
        say(f"environment {env.id}: destroy failed: {exc}")


async def _serve(
    state_dir: Path,
    nodes: int,
    inventory: Path | None,
    host: str,
    port: int,
    token: str | None,
    failover_timeout: float,
    http: tuple[str, int] = (DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT),
    log_level: str = "INFO",
    plugins: dict[str, Plugin] | None = None,
    kafka: str | None = None,
    mesos: str | None = None,
) -> int:
    try:
        return await _serve_core(
            state_dir,
            nodes,
            inventory,
            host,
            port,
            token,
            failover_timeout,
            http,
            log_level,
            plugins or {},
            kafka,
            mesos,
        )
    except RunNumberStoreError as exc:  # a damaged state directory: say which file, no traceback
        say(f"error: {exc}")
        return 1
    except SubscriptionError as exc:  # --mesos: the master did not take us
        say(f"error: {exc}")
        return 1


async def _serve_core(
    state_dir: Path,
    nodes: int,
    inventory: Path | None,
    host: str,
    port: int,
    token: str | None,
    failover_timeout: float,
    http: tuple[str, int],
    log_level: str,
    plugins: dict[str, Plugin],
    kafka: str | None,
    mesos: str | None = None,
) -> int:
    # Logging: a file in the state directory and one line per transition (see aliecs.server.corelog).
    log_path = configure_logging(log_level, state_dir)
    core = Core.embedded(
        state_dir=state_dir,
        nodes=inventory or nodes,
        outlive_core=True,
        failover_timeout=failover_timeout,
        plugins=plugins,  # only what --integration-plugins lists: no testplugin in production
        mesos=mesos,
    )
    async with core:
        transition_log = TransitionLog(core.events)
        transition_log.start()
        try:
            sinks = [KafkaSink(core.events, kafka)] if kafka else []  # besides the audit log
            server = ControlServer(core, host=host, port=port, token=token, sinks=sinks)
            web = WebServer(core, host=http[0], port=http[1], token=token)
        except TokenRequiredError as exc:
            say(f"error: {exc}")
            return EXIT_USAGE
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        received: list[str] = []

        def on_signal(name: str) -> None:
            received.append(name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            loop.add_signal_handler(sig, on_signal, sig.name)
        try:
            await server.start()
        except OSError as exc:
            say(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}")
            return 1
        # -- the web page and REST API (aliecs.web) --
        try:
            await web.start()
        except OSError as exc:
            say(f"error: cannot listen on {http[0]}:{http[1]} for the web page: {exc.strerror or exc}")
            await server.close()
            return 1
        if mesos is not None:
            say(f"Mesos framework on master {mesos}; state in {core.state_dir}")
        else:
            names = ", ".join(node.hostname for node in core.nodes)
            say(f"local cluster with nodes {names}; state in {core.state_dir}")
        for env in await core.environments():
            say(f"environment {env.id} restored in {env.state} (run {env.run_number or '-'})")
        # -- integration plugins (aliecs.integrations) --
        for service in core.integrations.services():
            why = f" ({service.reason})" if service.reason else ""
            say(f"plugin {service.name} at {service.endpoint}: {service.connection_state}{why}")
        say(f"audit log {server.audit.path}")
        say(f"log file {log_path} (level {log_level.upper()})")
        auth = "token required" if token else "no token: loopback only"
        say(f"control API listening on {host}:{server.port} ({auth}); pid {os.getpid()}")
        say(f"web page and REST API at {web.url} (open it in a browser; Ctrl-C stops the core)")
        await stop.wait()
        if received[0] == "SIGUSR1":
            say("SIGUSR1 received: stopping the core, environments keep running")
            await server.service.close()
            server.server.close()
            await server.server.wait_closed()
            await web.close()
            await transition_log.stop()
            await server.stop_sinks()
            await core.detach()
            say(
                f"detached; start aliecs-core on {core.state_dir} "
                f"within {failover_timeout:g}s to take them back"
            )
            return 0
        say(f"{received[0]} received, shutting down")
        say("closing the web page: no new requests, event streams ended")
        await web.close()
        say("closing the control API: no new requests, event streams ended")
        await server.service.close()
        server.server.close()
        await server.server.wait_closed()
        envs = await core.environments()
        say(f"{len(envs)} environment(s) to tear down")
        await asyncio.gather(*(_wind_down(env) for env in envs))
        say("stopping the actor tree and executors")
        await server.stop_sinks()
        await transition_log.stop()
    say("stopped, no task left")
    return 0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", type=click.Path(path_type=Path), default=None, help="State directory.")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address of the control API.")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port of the control API.")
@click.option("--nodes", type=int, default=1, show_default=True, help="Simulated nodes in the local cluster.")
@click.option(
    "--inventory",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML inventory of nodes (instead of --nodes).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"File holding the bearer token clients must send (required off loopback; or env {TOKEN_ENV}).",
)
@click.option(
    "--failover-timeout",
    type=float,
    default=DEFAULT_FAILOVER_TIMEOUT,
    show_default=True,
    help="Seconds the executors keep tasks running without this core (after a crash, or SIGUSR1).",
)
@click.option(
    "--mesos",
    metavar="URL",
    default=None,
    help="Run on Apache Mesos: the master's URL (http://HOST:5050) instead of the local cluster.",
)
# -- the web page and REST API (aliecs.web) --
@click.option(
    "--http-host", default=DEFAULT_HTTP_HOST, show_default=True, help="Address of the web page and REST API."
)
@click.option(
    "--http-port",
    type=int,
    envvar="ALIECS_HTTP_PORT",
    default=DEFAULT_HTTP_PORT,
    show_default=True,
    help="Port of the web page and REST API (0: any free port; env ALIECS_HTTP_PORT).",
)
# -- integration plugins (aliecs.integrations) --
@click.option(
    "--integration-plugins",
    multiple=True,
    metavar="NAMES",
    help="Integration plugins to load, comma separated (the original's integrationPlugins): dcs, trg, "
    "odc, ddsched, bookkeeping, testplugin, or an installed `aliecs.plugins` entry point. None by default.",
)
@click.option(
    "--plugin-endpoint",
    multiple=True,
    metavar="NAME=HOST:PORT",
    help="Where a plugin's service listens (the original's dcsServiceEndpoint, trgServiceEndpoint, "
    "odcEndpoint, ddSchedulerEndpoint, bookkeepingBaseUri). Repeat per plugin.",
)
@click.option(
    "--kafka-endpoint",
    metavar="HOST:PORT",
    default=None,
    help="Also publish every event to Kafka (the original's kafkaEndpoints; needs the `kafka` extra; "
    "untested here, no broker can run).",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log level (stderr and <state dir>/logs/aliecs-core.log).",
)
def command(
    state_dir: Path | None,
    host: str,
    port: int,
    nodes: int,
    inventory: Path | None,
    token_file: Path | None,
    failover_timeout: float,
    mesos: str | None,
    http_host: str,
    http_port: int,
    log_level: str,
    integration_plugins: tuple[str, ...],
    plugin_endpoint: tuple[str, ...],
    kafka_endpoint: str | None,
) -> None:
    """Run the aliecs control system (embedded local cluster + gRPC control API) until SIGTERM."""
    if mesos is not None:
        try:
            scheduler_url(mesos)
        except ValueError as exc:
            click.echo(f"aliecs-core: error: --mesos: {exc}", err=True)
            sys.exit(EXIT_USAGE)
    try:
        token = resolve_token(token_file)
    except TokenFileError as exc:
        click.echo(f"aliecs-core: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        plugins = load_plugins(PluginSettings.parse(integration_plugins, plugin_endpoint))
    except PluginConfigError as exc:
        click.echo(f"aliecs-core: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if kafka_endpoint and importlib.util.find_spec("aiokafka") is None:
        click.echo(
            "aliecs-core: error: --kafka-endpoint needs aiokafka: pip install 'aliecs[kafka]'", err=True
        )
        sys.exit(EXIT_USAGE)
    directory = state_dir or default_state_dir()
    http = (http_host, http_port)
    serve = _serve(
        directory,
        nodes,
        inventory,
        host,
        port,
        token,
        failover_timeout,
        http,
        log_level,
        plugins,
        kafka_endpoint,
        mesos,
    )
    sys.exit(run(serve))


def main() -> None:
    command()
