"""`python -m tests.mesos_emulator --port PORT --agents N [--attribute agent-2:detector=TPC ...]`.

Prints one line once everything listens, then logs to stderr until SIGTERM or SIGINT:

    mesos-emulator: ready {"master": "http://127.0.0.1:5050", "admin": "http://127.0.0.1:PORT",
                           "standby": null, "agents": {"agent-1": "127.0.0.1:PORT", ...}}

(on one line; the JSON after "ready " is what `Emulator.ready_info()` returns).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from tests.mesos_emulator.agent import AgentTimings
from tests.mesos_emulator.cluster import DEFAULT_PORTS_BASE, Emulator, EmulatorConfig

READY = "mesos-emulator: ready "


def parse_attribute(text: str) -> tuple[str, str, str]:
    """`agent-2:detector=TPC` -> ("agent-2", "detector", "TPC")."""
    hostname, sep, rest = text.partition(":")
    name, eq, value = rest.partition("=")
    if not sep or not eq or not hostname or not name:
        raise argparse.ArgumentTypeError(
            f"--attribute {text!r}: expected HOSTNAME:NAME=VALUE (agent-2:detector=TPC)"
        )
    return hostname, name, value


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.mesos_emulator", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5050, help="master port (0: a free one)")
    parser.add_argument("--admin-port", type=int, default=0, help="fault-injection API port (0: a free one)")
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument(
        "--attribute", type=parse_attribute, action="append", default=[], metavar="HOST:NAME=VALUE"
    )
    parser.add_argument("--cpus", type=float, default=8.0, help="cpus of each agent")
    parser.add_argument("--mem", type=float, default=16384.0, help="memory of each agent (MB)")
    parser.add_argument("--ports-base", type=int, default=DEFAULT_PORTS_BASE, help="agent-1's first port")
    parser.add_argument("--heartbeat-interval", type=float, default=15.0)
    parser.add_argument("--allocation-interval", type=float, default=1.0)
    parser.add_argument("--standby", action="store_true", help="also run a non-leading master (307)")
    parser.add_argument("--work-dir", type=Path, default=None, help="executor sandboxes (default: temporary)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    attributes: dict[str, dict[str, str]] = {}
    for hostname, name, value in args.attribute:
        attributes.setdefault(hostname, {})[name] = value
    return EmulatorConfig(
        agents=args.agents,
        host=args.host,
        port=args.port,
        admin_port=args.admin_port,
        standby=args.standby,
        attributes=attributes,
        cpus=args.cpus,
        mem=args.mem,
        ports_base=args.ports_base,
        heartbeat_interval=args.heartbeat_interval,
        allocation_interval=args.allocation_interval,
        timings=AgentTimings(),
        work_dir=args.work_dir,
    )


async def serve(config: EmulatorConfig) -> int:
    emulator = Emulator(config)
    try:
        await emulator.start()
    except OSError as exc:
        print(f"mesos-emulator: error: cannot listen: {exc}", file=sys.stderr)
        await emulator.stop()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(READY + json.dumps(emulator.ready_info()), flush=True)
    await stop.wait()
    await emulator.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        config = config_from(args)
    except ValueError as exc:
        print(f"mesos-emulator: error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
