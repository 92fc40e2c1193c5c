"""What the load scenarios share: a generated workflow of N fake tasks, nodes, timing and loop health.

The workflow is written into a temporary configuration repository (as a user would write one) so the
benchmarks go through template loading and expansion like any environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from aliecs.cluster.inventory import NodeSpec
from aliecs.cluster.ports import PortRange
from aliecs.workflow.limits import TemplateLimits
from aliecs.workflow.repository import DirectoryRepository

#: The environment transitions of one full cycle, in order (DEPLOY happens in `new_environment`).
CYCLE = ("DEPLOY", "CONFIGURE", "START_ACTIVITY", "STOP_ACTIVITY", "RESET", "EXIT")

_TASK = """\
name: {name}
control:
  mode: direct
wants:
  cpu: 0.001
  memory: 0.01
defaults:
  task_args: ""
command:
  shell: true
  value: "{command} {{{{ task_args }}}}"
"""

_WORKFLOW = """\
name: {name}
defaults:
  task_args: ""
roles:
"""

#: One `for` of the generated workflow: the tasks beyond one iterator's bound (the core's default
#: `for` limit, `aliecs.workflow.limits`) continue in the next one, so the role tree stays flat.
_ROLES = """\
  - name: "t{{{{ i }}}}"
    for:
      begin: "{first}"
      end: "{last}"
      var: i
    task:
      load: {task}
"""


def farm_task(name: str = "farmtask") -> str:
    """The descriptor of a fake farm task (`fakefarm-task`, options from the variable `task_args`);
    the tests of the farm and of the fake executor write the same one."""
    return _TASK.format(name=name, command="fakefarm-task")


def write_repository(
    root: Path, tasks: int, workflow: str = "load", task: str = "farmtask"
) -> DirectoryRepository:
    """A repository with workflow `workflow`: `tasks` roles, each one task of class `task`.

    The task's command carries fake-task options from the variable `task_args` (e.g.
    ``--latency 0.01``), read by the farm and the in-process fake executor alike.
    """
    per_for = TemplateLimits().for_items
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    (root / "tasks").mkdir(parents=True, exist_ok=True)
    (root / "tasks" / f"{task}.yaml").write_text(farm_task(task))
    (root / "workflows" / f"{workflow}.yaml").write_text(
        textwrap.dedent(_WORKFLOW.format(name=workflow))
        + "".join(
            _ROLES.format(first=first, last=min(first + per_for, tasks) - 1, task=task)
            for first in range(0, tasks, per_for)
        )
    )
    return DirectoryRepository(root, name="bench-repo")


def nodes_for(tasks: int, count: int = 1, first_port: int = 23000) -> list[NodeSpec]:
    """`count` nodes whose control port ranges hold `tasks` tasks between them (with headroom).

    The ranges start below Linux's ephemeral ports (32768 and up): the core's own client connections
    take ephemeral local ports, which would collide with control ports allocated there. They also
    avoid the default inventory's ranges (20000-21999, 30000-31999), which test suites running
    at the same time on a shared machine use.
    """
    per_node = tasks // count + 64
    return [
        NodeSpec(
            hostname=f"node{index:02d}",
            attributes={"machine_id": f"node{index:02d}"},
            cpu=1e6,
            memory=1e9,
            control_ports=PortRange(first_port + index * per_node, first_port + (index + 1) * per_node - 1),
            data_ports=PortRange(22900, 22999),
        )
        for index in range(count)
    ]


class LoopMonitor:
    """Measures event loop health: how late a periodic timer fires (the longest stall seen).

    A control system on one event loop is only as responsive as its longest synchronous stretch:
    heartbeats, GetState polls and user requests all wait behind it.
    """

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.max_stall = 0.0
        self.sections: dict[str, float] = {}
        self._current: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)  # the probe itself: lateness of this wake-up is the stall
            stall = loop.time() - due
            self.max_stall = max(self.max_stall, stall)
            if self._current is not None:
                self.sections[self._current] = max(self.sections.get(self._current, 0.0), stall)

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Also keep the longest stall seen while inside this block, under `name` (e.g. the baseline)."""
        self._current = name
        try:
            yield
        finally:
            self._current = None

    def sections_ms(self) -> dict[str, float]:
        return {name: round(stall * 1000, 1) for name, stall in self.sections.items()}

    def __enter__(self) -> LoopMonitor:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    @property
    def max_stall_ms(self) -> float:
        return round(self.max_stall * 1000, 1)


@contextlib.contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    """Store the wall time of the block, in seconds, under `key`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        into[key] = time.perf_counter() - started


def rss_bytes() -> int:
    """This process's resident set size now (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.asynccontextmanager
async def quiet_logs() -> AsyncIterator[None]:
    """Warnings only while benchmarking: logging thousands of INFO lines would be measured too."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def rounded(mapping: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    return {
        key: round(value, digits) if isinstance(value, float) else value for key, value in mapping.items()
    }
