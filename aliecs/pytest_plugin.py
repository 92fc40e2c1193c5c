"""pytest plugin: an embedded aliecs core per test, and waits with deadlines.

Registered through the `pytest11` entry point, so installing aliecs is enough: no pytest-asyncio,
no `asyncio_mode` setting, no conftest::

    from aliecs.testing import wait_for_environment_state

    async def test_my_device(aliecs_core):
        env = await aliecs_core.new_environment("my-workflow")
        await env.transition("CONFIGURE")
        await wait_for_environment_state(aliecs_core, env, "CONFIGURED", timeout=10)

Fixtures:
  * `aliecs_core`: a started `aliecs.Core` in a temporary state directory, destroyed (no process
    left) after the test. Uses the repository from the `aliecs_repository` fixture and the node
    count from `aliecs_nodes`; override either fixture in a test module to change them.
  * `aliecs_repository`: the default configuration repository that ships with aliecs.
  * `aliecs_nodes`: one simulated node whose control and data ports are a random block in
    10000-19999 (`isolated_nodes`), so test runs in parallel processes do not fight over ports.

Who runs the async code. The core's actors live on one event loop, so the `aliecs_core` fixture and
the test that uses it must run on the same loop. When pytest-asyncio is active it runs both (auto
mode, or strict mode with `@pytest.mark.asyncio`); this plugin never fights it. Every other `async
def` test that uses an aliecs fixture (or carries `@pytest.mark.aliecs`) is run by this plugin: on
the loop the core was started on, or on a fresh uvloop loop of its own. So a project with only
aliecs installed needs no other plugin.

The waits (`wait_for_environment_state`, `wait_for_task_states`, `wait_for`) live in
`aliecs.testing` and are re-exported here for older imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aliecs.api import Core
from aliecs.cluster.inventory import NodeSpec
from aliecs.runtime import new_event_loop
from aliecs.testing import (
    DEFAULT_TIMEOUT,
    isolated_nodes,
    wait_for,
    wait_for_environment_state,
    wait_for_task_states,
)
from aliecs.workflow.repository import TemplateRepository, default_repository

__all__ = [
    "DEFAULT_TIMEOUT",
    "isolated_nodes",
    "wait_for",
    "wait_for_environment_state",
    "wait_for_task_states",
]

#: The fixtures that make an async test "ours" (it is run on the core's loop).
ALIECS_FIXTURES = frozenset({"aliecs_core", "aliecs_loop"})
#: The event loop the aliecs fixtures of a test run on (set by `aliecs_core`'s setup).
_LOOP_KEY = pytest.StashKey[asyncio.AbstractEventLoop]()


def _asyncio_plugin_active(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("asyncio")


def _async_fixture(function: Callable[..., Any]) -> Any:
    """Declare an async fixture that works with and without pytest-asyncio.

    With pytest-asyncio importable, it is declared through `pytest_asyncio.fixture` (so strict mode
    runs it too, without warnings); when pytest-asyncio is absent or disabled (`-p no:asyncio`),
    `pytest_fixture_setup` below runs it on the loop of `aliecs_loop`."""
    function._aliecs_async_fixture = True  # type: ignore[attr-defined]
    try:
        import pytest_asyncio
    except ImportError:
        return pytest.fixture(function)
    return pytest_asyncio.fixture(function)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "aliecs: an async test run by the aliecs plugin on its own event loop (no other plugin needed)",
    )


@pytest.fixture
def aliecs_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop for this test when no other plugin provides one; closed after the test."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        yield runner.get_loop()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    """Run aliecs's async fixtures ourselves when pytest-asyncio is not there to do it."""
    function = fixturedef.func
    if getattr(function, "_aliecs_async_fixture", False) and not _asyncio_plugin_active(request.config):
        loop: asyncio.AbstractEventLoop = request.getfixturevalue("aliecs_loop")
        fixturedef.func = _synchronised(function, loop, request)  # type: ignore[misc]
        try:
            return (yield)
        finally:
            fixturedef.func = function  # type: ignore[misc]
    return (yield)


def _synchronised(
    function: Callable[..., Any], loop: asyncio.AbstractEventLoop, request: pytest.FixtureRequest
) -> Callable[..., Any]:
    """A sync stand-in for an async generator fixture: setup and teardown run on `loop`."""

    @functools.wraps(function)
    def setup(*args: Any, **kwargs: Any) -> Any:
        generator = function(*args, **kwargs)
        value = loop.run_until_complete(generator.__anext__())

        def teardown() -> None:
            with contextlib.suppress(StopAsyncIteration):
                loop.run_until_complete(generator.__anext__())

        request.addfinalizer(teardown)
        return value

    return setup


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an `async def` test that no other plugin took, if it is ours (aliecs fixture or marker)."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None  # a sync test, or one another plugin (pytest-asyncio) already wrapped
    ours = ALIECS_FIXTURES & set(pyfuncitem.fixturenames) or pyfuncitem.get_closest_marker("aliecs")
    if not ours:
        return None
    arguments = {
        name: pyfuncitem.funcargs[name]
        for name in inspect.signature(function).parameters
        if name in pyfuncitem.funcargs
    }
    loop = pyfuncitem.stash.get(_LOOP_KEY, None)
    if loop is not None and not loop.is_closed():
        loop.run_until_complete(function(**arguments))
    else:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(function(**arguments))
    return True


@pytest.fixture
def aliecs_repository() -> TemplateRepository:
    return default_repository()


@pytest.fixture
def aliecs_nodes() -> list[NodeSpec]:
    return isolated_nodes(1)


@_async_fixture
async def aliecs_core(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    aliecs_repository: TemplateRepository,
    aliecs_nodes: int | list[NodeSpec],
) -> AsyncIterator[Core]:
    request.node.stash[_LOOP_KEY] = asyncio.get_running_loop()
    async with Core.embedded(
        state_dir=tmp_path / "aliecs-state", nodes=aliecs_nodes, repository=aliecs_repository
    ) as core:
        yield core
