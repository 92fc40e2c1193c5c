"""`aliecs-executor`: the executor of one node, as its own process.

It owns the node's task processes (launch, OCC, events, deaths, kills) and serves the executor protocol
(`protos/executor.proto`) to the core. The local cluster starts one per simulated node; on a real
cluster one runs on every machine. Task processes are its children, never the core's, and by default
outlive it: a restarted executor adopts them again from its state file. See
`aliecs.executor.service` for the failover timeout after which an executor whose core is gone kills its
tasks and exits.

It prints one line, `aliecs-executor: ready HOST:PORT pid PID`, once it listens (whoever started it
waits for that line), then logs to stderr.

With `--mesos` (or when a Mesos agent started it: MESOS_AGENT_ENDPOINT set, no --node) it is instead
the Mesos custom executor of its agent's node (`aliecs.mesos.executor`): launches, kills and task
status travel through Mesos, the core's control still comes straight over the executor protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import click

from aliecs.cluster.inventory import NodeSpec
from aliecs.executor.agent import NodeAgent
from aliecs.executor.service import DEFAULT_FAILOVER_TIMEOUT, ExecutorService, executor_server
from aliecs.runtime import run
from aliecs.server.auth import TokenRequiredError, check_listen, require_token

log = logging.getLogger("aliecs.executor")

EXIT_USAGE = 2


def executor_kinds() -> dict[str, type]:
    """How tasks come to life: real processes, fake-farm endpoints (load tests), or in-memory fakes."""
    from actors.executor import ExecutorActor
    from actors.fake_executor import FakeExecutorActor
    from actors.farm_executor import FarmExecutorActor

    return {"process": ExecutorActor, "farm": FarmExecutorActor, "fake": FakeExecutorActor}


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


async def serve(
    node: str,
    host: str,
    port: int,
    state_dir: Path,
    failover_timeout: float,
    kind: str,
    token: str | None,
    tasks_outlive: bool = True,
) -> int:
    try:
        check_listen(host, token)
    except TokenRequiredError as exc:
        click.echo(f"aliecs-executor: error: {exc}", err=True)
        return EXIT_USAGE
    directory = state_dir / "executors"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    agent = NodeAgent(
        NodeSpec(node),
        executor_kinds()[kind],
        state_file=directory / f"{node}.tasks.json",
    )
    await agent.start()
    service = ExecutorService(agent, failover_timeout, tasks_outlive)
    server = executor_server(service)
    if token:
        require_token(server, token)
    try:
        # Bound here rather than by grpclib so that port 0 (any free port) can be read back.
        listening = socket.create_server((host, port))
        await server.start(sock=listening)
    except OSError as exc:
        click.echo(f"aliecs-executor: error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        await agent.stop(kill_tasks=False)
        return 1
    bound = listening.getsockname()[1]
    write_private(
        directory / f"{node}.json",
        json.dumps({"pid": os.getpid(), "host": host, "port": bound, "executor_id": service.executor_id}),
    )
    print(f"aliecs-executor: ready {host}:{bound} pid {os.getpid()}", flush=True)
    log.info("node %s: %d task(s) adopted, failover timeout %gs", node, len(agent.tasks), failover_timeout)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    failover = asyncio.ensure_future(service.failover_expired())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({failover, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if failover.done():
        log.error(
            "node %s: no word from the core for %gs: killing %d task(s)",
            node,
            failover_timeout,
            len(agent.tasks),
        )
    failover.cancel()
    stopped.cancel()
    server.close()
    await agent.stop(kill_tasks=True)
    await server.wait_closed()
    (directory / f"{node}.json").unlink(missing_ok=True)
    return 0


async def serve_mesos(kind: str, token: str | None) -> int:
    """The Mesos custom executor mode (`aliecs.mesos.executor`): everything comes from MESOS_*."""
    from aliecs.mesos.executor import MesosExecutor
    from aliecs.mesos.executor_driver import MesosEnvironment, MesosEnvironmentError

    try:
        env = MesosEnvironment.from_environ(os.environ)
        check_listen(env.agent_host, token)
    except (MesosEnvironmentError, TokenRequiredError) as exc:
        click.echo(f"aliecs-executor: error: {exc}", err=True)
        return EXIT_USAGE
    reason = await MesosExecutor(env, executor_kinds()[kind], token).run()
    log.info("Mesos executor %s ended: %s", env.executor_id, reason)
    if reason in ("stopped", "disconnected"):
        return 0
    click.echo(f"aliecs-executor: Mesos executor {env.executor_id} ended: {reason}", err=True)
    return 1


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--mesos",
    is_flag=True,
    help="Run as a Mesos custom executor (started by a Mesos agent, which sets MESOS_*); "
    "the default when MESOS_AGENT_ENDPOINT is set and --node is not given.",
)
@click.option(
    "--node", default=None, help="Name of the node this executor runs (its hostname in the inventory)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on for the core.")
@click.option("--port", type=int, default=0, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None, help="State directory.")
@click.option(
    "--failover-timeout",
    type=float,
    default=DEFAULT_FAILOVER_TIMEOUT,
    show_default=True,
    help="Seconds without the core after which the tasks are killed and the executor exits.",
)
@click.option("--kind", type=click.Choice(["process", "farm", "fake"]), default="process", show_default=True)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="File holding the token the core must send (required off loopback).",
)
@click.option(
    "--tasks-outlive/--tasks-die-with-executor",
    default=True,
    show_default=True,
    help="Whether task processes survive this executor (a restarted one adopts them) or die with it.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def command(
    mesos: bool,
    node: str | None,
    host: str,
    port: int,
    state_dir: Path | None,
    failover_timeout: float,
    kind: str,
    token_file: Path | None,
    tasks_outlive: bool,
    verbose: bool,
) -> None:
    """Run the aliecs executor of one node (serving the core over the executor protocol).

    The local cluster starts one per node. Launched by a Mesos agent (--mesos, or MESOS_AGENT_ENDPOINT
    set) it is the Mesos custom executor of that agent's node."""
    token = token_file.read_text().strip() if token_file else None
    if mesos or (node is None and os.environ.get("MESOS_AGENT_ENDPOINT")):
        executor_id = os.environ.get("MESOS_EXECUTOR_ID", "mesos")
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING,
            format=f"%(asctime)s aliecs-executor[{executor_id}] %(levelname)s %(message)s",
        )
        sys.exit(run(serve_mesos(kind, token)))
    if node is None:
        click.echo(
            "aliecs-executor: error: --node NAME is required (or --mesos under a Mesos agent)", err=True
        )
        sys.exit(EXIT_USAGE)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=f"%(asctime)s aliecs-executor[{node}] %(levelname)s %(message)s",
    )
    from aliecs.api import default_state_dir

    directory = state_dir or default_state_dir()
    sys.exit(run(serve(node, host, port, directory, failover_timeout, kind, token, tasks_outlive)))


def main() -> None:
    command()


if __name__ == "__main__":
    main()
