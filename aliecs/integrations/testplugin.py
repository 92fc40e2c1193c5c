"""`testplugin`: the in-process plugin of tests and harnesses (never loaded by `aliecs-core` unless
listed in its `--integration-plugins`).

Noop(), Test(label), Fail(message), and Wait(gate)/Open(gate) to order calls. `Test` records
(environment id, label or role path) in `calls`, so tests can read the order in which calls ran;
`Wait` blocks until `Open` is called with the same gate in the same environment.

There is no shared instance: each embedded core given no plugins builds its own
(`aliecs.integrations.builtin_plugins`), so two cores in one process never see each other's calls
(`aliecs.testing.core_testplugin(core)` returns a core's). The record keeps the last `MAX_CALLS`
calls and at most `MAX_GATES` gates exist, so a long-lived core cannot grow it without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from aliecs.integrations.base import CallContext

MAX_CALLS = 10_000  # `Test` calls remembered, the oldest dropped first: far more than a test makes
MAX_GATES = 1_000  # distinct (environment, gate) pairs; one more is a call error


class TestPlugin:
    __test__ = False  # not a pytest test class
    name = "testplugin"

    def __init__(self, endpoint: str = "") -> None:
        del endpoint  # in-process: nothing to connect to
        self.calls: deque[tuple[str, str]] = deque(maxlen=MAX_CALLS)
        self._gates: dict[tuple[str, str], asyncio.Event] = {}

    def recorded(self, environment_id: str) -> list[str]:
        """The labels `Test` recorded for one environment, in call order."""
        return [label for env_id, label in self.calls if env_id == environment_id]

    def _gate(self, environment_id: str, name: str) -> asyncio.Event:
        key = (environment_id, name)
        if key not in self._gates and len(self._gates) >= MAX_GATES:
            raise RuntimeError(f"testplugin: more than {MAX_GATES} gates; gate {name[:64]!r} refused")
        return self._gates.setdefault(key, asyncio.Event())

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
