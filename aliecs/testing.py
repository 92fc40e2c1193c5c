"""What a test harness needs, in one import: repositories, simulated nodes and waits with deadlines.

    from aliecs.testing import DirectoryRepository, wait_for_environment_state, wait_for_task_states

Nothing here depends on pytest: the waits are plain async functions usable from any harness. The
pytest fixtures built on them (`aliecs_core`, `aliecs_repository`, `aliecs_nodes`) come from the
plugin `aliecs.pytest_plugin`, which installing aliecs registers.

The waits re-check their condition after every event the core publishes (no polling) and fail with
an `AssertionError` naming what they expected and what they saw.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable, Iterable

from aliecs.api import Core, Environment
from aliecs.cluster.inventory import NodeSpec
from aliecs.cluster.ports import PortRange
from aliecs.events import SubscriberOverflow
from aliecs.integrations.testplugin import TestPlugin
from aliecs.workflow.repository import DirectoryRepository, TemplateRepository, default_repository

__all__ = [
    "DEFAULT_TIMEOUT",
    "DirectoryRepository",
    "NodeSpec",
    "TemplateRepository",
    "core_testplugin",
    "default_repository",
    "isolated_nodes",
    "wait_for",
    "wait_for_environment_state",
    "wait_for_task_states",
]

DEFAULT_TIMEOUT = 30.0
PORT_BLOCK = 200  # per node: 100 control ports, 100 data ports


def isolated_nodes(count: int = 1, rng: random.Random | None = None) -> list[NodeSpec]:
    """`count` simulated nodes on consecutive random port blocks below the default 20000-30999 ranges
    (and below Linux's ephemeral ports), so concurrent cores on one machine rarely collide."""
    blocks = 10000 // PORT_BLOCK
    if count > blocks:
        raise ValueError(f"at most {blocks} isolated nodes")
    first = (rng or random.Random()).randrange(0, blocks - count + 1)
    nodes = []
    for index in range(count):
        base = 10000 + (first + index) * PORT_BLOCK
        hostname = "localhost" if count == 1 else f"node{index:02d}"
        nodes.append(
            NodeSpec(
                hostname=hostname,
                attributes={"machine_id": hostname},
                control_ports=PortRange(base, base + PORT_BLOCK // 2 - 1),
                data_ports=PortRange(base + PORT_BLOCK // 2, base + PORT_BLOCK - 1),
            )
        )
    return nodes


def core_testplugin(core: Core) -> TestPlugin:
    """The `testplugin` instance of `core`, whose `recorded(env_id)` lists the labels its `Test`
    calls recorded. Every core has its own (built with it when given no `plugins`)."""
    plugin = core.loaded_plugins().get(TestPlugin.name)
    if not isinstance(plugin, TestPlugin):
        raise LookupError("this core has no testplugin: it was given plugins= without one")
    return plugin


async def poll_until(
    predicate: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 30.0, interval: float = 0.01
) -> None:
    """Re-check `predicate()` every `interval` seconds until it is true, for conditions no event
    announces (a subscriber arriving, a file appearing, a server answering); AssertionError naming
    `what` after `timeout`. The predicate may be a coroutine function (a probe over the network).

    Prefer `wait_for` when the core publishes an event for the change: it wakes up at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)  # poll


async def wait_for(
    core: Core, predicate: Callable[[], bool], what: str, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Wait until `predicate()` is true, re-checking after every event the core publishes.

    Raises AssertionError naming `what` once `timeout` seconds have passed.
    """
    subscription = core.events.subscribe()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
            try:
                await subscription.next(remaining)
            except TimeoutError:
                continue
            except SubscriberOverflow:
                subscription = core.events.subscribe()
    finally:
        subscription.close()


async def wait_for_environment_state(
    core: Core, env: Environment, state: str, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Wait until `env` is in `state` (e.g. after an automatic STOP or a task death)."""
    try:
        await wait_for(core, lambda: env.state == state, f"environment {env.id} to be {state}", timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc} (it is {env.state}{': ' + env.error if env.error else ''})") from None


async def wait_for_task_states(
    core: Core,
    env: Environment,
    state: str,
    names: Iterable[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Wait until every task of `env` (or those whose name ends with one of `names`) is in `state`."""
    wanted = tuple(names) if names is not None else None

    def selected() -> list[tuple[str, str]]:
        return [
            (task.name, task.state)
            for task in env.tasks
            if wanted is None or any(task.name.endswith(name) for name in wanted)
        ]

    try:
        await wait_for(core, lambda: all(s == state for _n, s in selected()), f"tasks to be {state}", timeout)
    except AssertionError as exc:
        others = ", ".join(f"{name}={s}" for name, s in selected() if s != state)
        raise AssertionError(f"{exc}; still: {others}") from None
