"""Integration plugins: the namespaces of functions that `call` roles invoke (`testplugin.Test()`).

The original links plugins for ODC, DCS, the trigger system, Bookkeeping and more; we have no such
services, so only the interface is here, plus `testplugin` for tests. A plugin gives, for each call,
a mapping of function names to callables. They may be plain functions (which must be quick: they run
on the event loop) or return awaitables, which the hook engine awaits under the call's `timeout`.
Knowing the call (`CallContext`) lets a plugin act on behalf of the right environment and role, as
the original's per-call plugin objects do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class CallContext:
    """The call being made: who makes it and under which traits (`__call_*` in templates)."""

    environment_id: str
    role_path: str
    func: str
    trigger: str
    await_: str
    timeout: float
    critical: bool
    vars: Mapping[str, str]


class Plugin(Protocol):
    """A plugin: its namespace name and the functions it offers to one call."""

    name: str

    def functions(self, call: CallContext) -> Mapping[str, Callable[..., Any]]: ...


class TestPlugin:
    """`testplugin`: Noop(), Test(label), Fail(message), and Wait(gate)/Open(gate) to order calls.

    `Test` records (environment id, label or role path) in `calls`, so tests can read the order in
    which calls ran; `Wait` blocks until `Open` is called with the same gate in the same environment.
    """

    __test__ = False  # not a pytest test class
    name = "testplugin"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._gates: dict[tuple[str, str], asyncio.Event] = {}

    def recorded(self, environment_id: str) -> list[str]:
        """The labels `Test` recorded for one environment, in call order."""
        return [label for env_id, label in self.calls if env_id == environment_id]

    def _gate(self, environment_id: str, name: str) -> asyncio.Event:
        return self._gates.setdefault((environment_id, name), asyncio.Event())

    def functions(self, call: CallContext) -> Mapping[str, Callable[..., Any]]:
        def noop() -> str:
            return ""

        async def test(label: str = "") -> str:
            self.calls.append((call.environment_id, label or call.role_path))
            return "ok"

        def fail(message: str = "testplugin.Fail() was called") -> str:
            raise RuntimeError(message)

        async def wait(gate: str) -> str:
            await self._gate(call.environment_id, gate).wait()
            return gate

        def open_gate(gate: str) -> str:
            self._gate(call.environment_id, gate).set()
            return gate

        return {"Noop": noop, "Test": test, "Fail": fail, "Wait": wait, "Open": open_gate}


TESTPLUGIN = TestPlugin()


def builtin_plugins() -> dict[str, Plugin]:
    """The plugins every environment gets unless it is given others."""
    return {TESTPLUGIN.name: TESTPLUGIN}
