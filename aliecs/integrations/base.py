"""The extension point: what an integration plugin is and what it is given for each call.

A plugin contributes a namespace of functions to `call` roles (`dcs.StartOfRun()` calls the function
`StartOfRun` of the plugin named `dcs`). The hook engine asks the plugin for its functions once per
call, handing it the call (`CallContext`): the environment, the role, the variables the call sees
(the role's stack, the run's variables, what earlier calls set, the `__call_*` traits) and the
call's timeout. Functions may be plain (quick: they run on the event loop) or coroutines, which the
engine awaits. A function fails the call by raising; the exception's text is the reason operators see.

Two levels:
- `Plugin`: the minimal protocol (a `name` and `functions(call)`), enough for a harness's in-process
  helper such as `testplugin`.
- `ServicePlugin`: a plugin that talks to an outside service. It has an endpoint, a start and a stop,
  a connection state (the gRPC connectivity names the original reports: IDLE, CONNECTING, READY,
  TRANSIENT_FAILURE, SHUTDOWN), data for GetIntegratedServices and per-environment data for
  GetEnvironment(s) `integratedServicesData`, and publishes `IntegratedServiceEvent`s.
A plugin that cannot reach its service at start is reported (state and reason), never fatal to the
core: its calls fail with that reason until the service answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from aliecs.durations import parse_duration
from aliecs.events import DONE_ERROR, DONE_OK, STARTED, IntegratedServiceEvent

log = logging.getLogger(__name__)

IDLE = "IDLE"
CONNECTING = "CONNECTING"
READY = "READY"
TRANSIENT_FAILURE = "TRANSIENT_FAILURE"
SHUTDOWN = "SHUTDOWN"


class IntegrationError(RuntimeError):
    """A call to an integrated service failed; the message says which call and why."""


def _discard(*_: Any) -> None:
    return None


def _no_roles() -> Sequence[Mapping[str, str]]:
    return ()


@dataclass(frozen=True)
class CallContext:
    """The call being made: who makes it, under which traits, with which variables.

    `vars` is what the call's expression sees (the original's call varStack). `set_var` writes an
    environment-wide runtime variable that later calls and hooks see (the trigger plugin records
    `trg_start_time_ms` this way); `roles` gives the variable stacks of every role of the workflow
    (the DD scheduler plugin collects the StfBuilder/StfSender hosts from them)."""

    environment_id: str
    role_path: str
    func: str
    trigger: str
    await_: str
    timeout: float
    critical: bool
    vars: Mapping[str, str]
    set_var: Callable[[str, str], None] = field(default=_discard, compare=False, repr=False)
    roles: Callable[[], Sequence[Mapping[str, str]]] = field(default=_no_roles, compare=False, repr=False)

    def var(self, name: str, default: str = "") -> str:
        return self.vars.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.vars

    def flag(self, name: str) -> bool:
        """A boolean variable ("true", "1", "yes"...; absent or anything else is false)."""
        return self.vars.get(name, "").strip().lower() in ("true", "1", "yes", "on")

    def deadline(self, default: float) -> float:
        """Seconds this call may take: its `timeout`, or the plugin's default when it has none."""
        return self.timeout if self.timeout > 0 else default

    def duration(self, name: str, default: float) -> float:
        """A duration variable in seconds (`dcs_sor_grace_period: 10s`); `default` when absent or bad."""
        text = self.vars.get(name, "")
        try:
            return parse_duration(text) if text.strip() else default
        except ValueError:
            log.warning(
                "environment %s: %s=%r is not a duration, using %gs", self.environment_id, name, text, default
            )
            return default


@runtime_checkable
class Plugin(Protocol):
    """A plugin: its namespace name and the functions it offers to one call."""

    name: str

    def functions(self, call: CallContext) -> Mapping[str, Callable[..., Any]]: ...


Publish = Callable[[IntegratedServiceEvent], None]


class ServicePlugin:
    """Base of plugins that talk to an outside service (see the module docstring).

    Subclasses set `name`, `pretty_name` and `endpoint_setting` (the original's configuration key,
    shown by `coconut info`), implement `functions`, and override `start`/`stop`/`connection_state`
    when they hold a connection. `publish` is connected by the core before `start`."""

    name: str = ""
    pretty_name: ClassVar[str] = ""
    endpoint_setting: ClassVar[str] = ""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.publish: Publish = _discard
        self._state = IDLE
        self.state_reason = ""
        self._reported = ""  # the last connection problem logged

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the service; must not raise because the service is away (report it instead)."""
        self.set_state(READY)

    async def stop(self) -> None:
        self.set_state(SHUTDOWN)

    # -- what the core shows ------------------------------------------------------------------------

    @property
    def connection_state(self) -> str:
        return self._state

    def set_state(self, state: str, reason: str = "") -> None:
        """Record the connection state (and why, when it is not READY); logs each new problem once
        and the recovery, not every retry."""
        who = f"{self.pretty_name or self.name} at {self.endpoint}"
        if state == TRANSIENT_FAILURE and reason != self._reported:
            log.warning("%s: %s", who, reason)
            self._reported = reason
        elif state == READY and self._reported:
            log.info("%s: connected again", who)
            self._reported = ""
        self._state = state
        self.state_reason = reason

    def data(self) -> dict[str, Any]:
        """Free data for GetIntegratedServices (JSON); by default the reason of a failed connection."""
        return {"reason": self.state_reason} if self.state_reason else {}

    def environment_data(self, environment_id: str) -> dict[str, Any] | None:
        """What this service knows of one environment, for `integratedServicesData` (None: nothing)."""
        return None

    # -- calls ---------------------------------------------------------------------------------------

    def functions(self, call: CallContext) -> Mapping[str, Callable[..., Any]]:
        raise NotImplementedError

    def operations(
        self, call: CallContext, functions: Mapping[str, Callable[[], Awaitable[str]]]
    ) -> dict[str, Callable[[], Awaitable[str]]]:
        """The call's functions, each reporting its operation STARTED, then DONE_OK or DONE_ERROR
        with the reason (steps inside are reported ONGOING by the plugin)."""

        def reported(function: Callable[[], Awaitable[str]]) -> Callable[[], Awaitable[str]]:
            async def run() -> str:
                self.report(call, STARTED)
                try:
                    result = await function()
                except Exception as exc:
                    self.report(call, DONE_ERROR, error=str(exc))
                    raise
                self.report(call, DONE_OK)
                return result

            return run

        return {name: reported(function) for name, function in functions.items()}

    def report(
        self,
        call: CallContext,
        status: str,
        step: str = "",
        step_status: str = "",
        error: str = "",
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish the progress of one call's operation as an `integratedServiceEvent`."""
        self.publish(
            IntegratedServiceEvent(
                name=call.role_path,
                operation_name=call.func,
                operation_status=status,
                operation_step=step,
                operation_step_status=step_status,
                environment_id=call.environment_id,
                payload=json.dumps(payload or {}, separators=(",", ":"), default=str),
                error=error,
            )
        )
