"""The local cluster's executors: one `aliecs-executor` process per simulated node.

The core starts them (or, after a restart of the core, finds the ones still running from their
files in `<state>/executors/`) and talks to them over the executor protocol, exactly as it would to
executors on other machines. They run in sessions of their own, so a signal to the core's process
group does not reach them, and their task processes are their children, never the core's.

Two lifetimes:
- `outlive_core=False` (the embedded default, for test harnesses): an executor dies with the core that
  started it (PR_SET_PDEATHSIG) and its tasks die with it, so a harness never leaks a process.
- `outlive_core=True` (`aliecs-core`): executors and tasks survive a crash or restart of the core and
  wait for it for the failover timeout; a new core re-adopts them.

An executor that dies is started again on its node (the new one adopts the tasks still running).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from aliecs.cluster.inventory import NodeSpec
from aliecs.executor.agent import NodeAgent
from aliecs.executor.link import AgentLink, RemoteLink
from aliecs.executor.orders import ExecutorUnavailableError, TaskStatus
from aliecs.executor.process import die_with_parent, process_start_time, task_environment

log = logging.getLogger(__name__)

_READY_TIMEOUT = 30.0


class ExecutorStartError(RuntimeError):
    pass


class _Executor:
    """One node's executor process as the core knows it."""

    def __init__(
        self, node: NodeSpec, link: RemoteLink, pid: int, process: asyncio.subprocess.Process | None
    ):
        self.node = node
        self.link = link
        self.pid = pid
        self.process = process  # None when found running (started by an earlier core)


class LocalExecutors:
    def __init__(
        self,
        nodes: list[NodeSpec],
        state_dir: Path,
        kind: str = "process",
        outlive_core: bool = False,
        failover_timeout: float = 60.0,
        heartbeat_interval: float = 1.0,
    ) -> None:
        self.nodes = nodes
        self.directory = state_dir / "executors"
        self.kind = kind
        self.outlive_core = outlive_core
        self.failover_timeout = failover_timeout
        self.heartbeat_interval = heartbeat_interval
        self.executors: dict[str, _Executor] = {}
        self.adopted: dict[str, list[TaskStatus]] = {}
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def links(self) -> dict[str, RemoteLink]:
        return {hostname: executor.link for hostname, executor in self.executors.items()}

    async def start(self) -> dict[str, RemoteLink]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        started = await asyncio.gather(
            *(self._start_node(node) for node in self.nodes), return_exceptions=True
        )
        failures = [result for result in started if isinstance(result, BaseException)]
        if failures:
            await self.stop()
            raise failures[0]
        return self.links

    async def _start_node(self, node: NodeSpec) -> None:
        found = await self._reconnect(node)
        if found is None:
            found = await self._spawn(node)
        self.executors[node.hostname] = found
        self._watchers.append(asyncio.ensure_future(self._supervise(found)))

    async def _reconnect(self, node: NodeSpec) -> _Executor | None:
        """The executor an earlier core left running on this node, if it is still there."""
        try:
            info = json.loads((self.directory / f"{node.hostname}.json").read_text())
        except (OSError, ValueError):
            return None
        if process_start_time(int(info.get("pid", 0))) is None:
            return None
        link = RemoteLink(
            node.hostname, info["host"], int(info["port"]), heartbeat_interval=self.heartbeat_interval
        )
        try:
            self.adopted[node.hostname] = await link.start()
        except ExecutorUnavailableError as exc:
            log.warning(
                "node %s: executor pid %s does not answer (%s): starting a new one",
                node.hostname,
                info["pid"],
                exc,
            )
            await link.close()
            return None
        log.info("node %s: reconnected to executor pid %s", node.hostname, info["pid"])
        executor = _Executor(node, link, int(info["pid"]), None)
        link.will_restart = lambda: not self._stopping and process_start_time(executor.pid) is None
        return executor

    async def _launch_process(self, node: NodeSpec) -> tuple[asyncio.subprocess.Process, str, int]:
        log_file = self.directory / f"{node.hostname}.log"
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "aliecs.cli.executor",
                "--node",
                node.hostname,
                "--state-dir",
                str(self.directory.parent),
                "--failover-timeout",
                str(self.failover_timeout),
                "--kind",
                self.kind,
                "--tasks-outlive" if self.outlive_core else "--tasks-die-with-executor",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=fd,
                # The core's own environment (tokens, settings) is not the executor's business.
                env=task_environment({}),
                start_new_session=True,
                preexec_fn=None if self.outlive_core else die_with_parent,
            )
        finally:
            os.close(fd)
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), _READY_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ExecutorStartError(
                f"node {node.hostname}: executor not ready within {_READY_TIMEOUT:g}s; see {log_file}"
            ) from None
        words = line.decode(errors="replace").split()
        if len(words) < 3 or words[1] != "ready":
            await process.wait()
            tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
            raise ExecutorStartError(
                f"node {node.hostname}: executor failed to start "
                f"(exit {process.returncode}): {' | '.join(tail)}"
            )
        host, _, port = words[2].rpartition(":")
        return process, host, int(port)

    async def _spawn(self, node: NodeSpec) -> _Executor:
        process, host, port = await self._launch_process(node)
        link = RemoteLink(node.hostname, host, port, heartbeat_interval=self.heartbeat_interval)
        executor = _Executor(node, link, process.pid, process)
        link.will_restart = lambda: not self._stopping and process_start_time(executor.pid) is None
        self.adopted[node.hostname] = await link.start()
        return executor

    async def _supervise(self, executor: _Executor) -> None:
        """Start the node's executor again whenever it dies (the new one adopts its tasks)."""
        while not self._stopping:
            await self._wait_gone(executor)
            if self._stopping:
                return
            log.error(
                "node %s: executor pid %d died; starting a new one", executor.node.hostname, executor.pid
            )
            executor.link.restarting()
            try:
                process, host, port = await self._launch_process(executor.node)
            except ExecutorStartError as exc:
                log.critical("%s", exc)
                await executor.link.restarted(*executor.link.address)  # reconcile: its tasks are lost
                return
            executor.process, executor.pid = process, process.pid
            await executor.link.restarted(host, port)

    @staticmethod
    async def _wait_gone(executor: _Executor) -> None:
        if executor.process is not None:
            await executor.process.wait()
            return
        # Not our child (started by an earlier core): watch it through a pidfd.
        gone = asyncio.get_running_loop().create_future()
        try:
            fd = os.pidfd_open(executor.pid)
        except ProcessLookupError:
            return
        loop = asyncio.get_running_loop()

        def on_exit() -> None:
            if not gone.done():
                gone.set_result(None)

        loop.add_reader(fd, on_exit)
        try:
            await gone
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    async def stop(self, stop_executors: bool = True) -> None:
        """Close the links; with `stop_executors`, SIGTERM every executor (it kills what it still
        runs) and wait for it. Without, executors and tasks keep running for the next core."""
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        for executor in self.executors.values():
            await executor.link.close()
        if stop_executors:
            await asyncio.gather(*(self._terminate(executor) for executor in self.executors.values()))
        self.executors.clear()

    @staticmethod
    async def _terminate(executor: _Executor) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(executor.pid, signal.SIGTERM)
        if executor.process is not None:
            try:
                await asyncio.wait_for(executor.process.wait(), 30.0)
            except TimeoutError:
                executor.process.kill()
                await executor.process.wait()
        else:
            await asyncio.wait_for(LocalExecutors._wait_gone(executor), 30.0)


class InProcessExecutors:
    """Executor agents inside the core's process (the fake executors of the scale benchmarks): the
    same links as `LocalExecutors`, with no process and no transport in between."""

    def __init__(self, nodes: list[NodeSpec], executor_class: type) -> None:
        self.nodes = nodes
        self.executor_class = executor_class
        self.links: dict[str, AgentLink] = {}
        self.adopted: dict[str, list[TaskStatus]] = {}

    async def start(self) -> dict[str, AgentLink]:
        for node in self.nodes:
            link = AgentLink(NodeAgent(node, self.executor_class))
            await link.start()
            self.links[node.hostname] = link
        return self.links

    async def stop(self, stop_executors: bool = True) -> None:
        for link in self.links.values():
            await link.close()
        self.links.clear()
