"""peanut's interactive mode: drive one OCC process with buttons, as the original's TUI does.

Run `peanut` with no command. One button and one key per transition (CONFIGURE `c`, RESET `r`,
START `s`, STOP `t`, RECOVER `v`, EXIT `x`); only the transitions allowed from the current state
are enabled. The state is polled every 2 s and shown as CONNECTING, UNREACHABLE or the process's
state; the process's device events (END_OF_STREAM, TASK_INTERNAL_ERROR, ...) are shown as they
come, and messages (a failed transition's full reason) wrap instead of being cut at the edge.
A configuration file (YAML or JSON, nested maps flattened to dotted keys, `a: {b: 1}` -> `a.b=1`)
is pushed as the CONFIGURE arguments: give it with `--config FILE` or load one with `l`. Keys: `n`
reconnect, `l` load a configuration, `q` quit.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Button, Footer, Header, Input, RichLog, Static

from aliecs.cli.peanut_config import ConfigError, flatten, load_config
from aliecs.occ.client import OccClient
from aliecs.occ.errors import OccError
from aliecs.occ.states import allowed_events

#: Button label -> OCC event. GO_ERROR is deliberately absent: peanut cannot trigger it.
TRANSITIONS = ("CONFIGURE", "RESET", "START", "STOP", "RECOVER", "EXIT")
#: The key of each transition (shown in the footer).
KEYS = {"CONFIGURE": "c", "RESET": "r", "START": "s", "STOP": "t", "RECOVER": "v", "EXIT": "x"}
POLL_SECONDS = 2.0
CONNECTING = "CONNECTING"
UNREACHABLE = "UNREACHABLE"

__all__ = ["ConfigError", "PeanutApp", "flatten", "load_config", "run_tui"]


class PeanutApp(App[None]):
    """The TUI. `client` is owned by the app and closed when it exits."""

    TITLE = "peanut"
    CSS = """
    #status { height: 3; padding: 1 2; }
    #buttons { height: 3; }
    #config-path { display: none; }
    #config-path.visible { display: block; }
    Button { margin: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(key, f"transition('{name}')", name) for name, key in KEYS.items()),
        Binding("n", "reconnect", "reconnect"),
        Binding("l", "load_config", "load config"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self, client: OccClient, config: Path | None = None, poll_seconds: float = POLL_SECONDS
    ) -> None:
        super().__init__()
        self.client = client
        self.config_path = config
        self.config: dict[str, str] = {}
        self.poll_seconds = poll_seconds
        self.state = CONNECTING
        self.pid = 0
        self.busy = False
        self.events_subscribed = False
        #: Every message shown in the log, in full (the widget wraps them to the screen).
        self.messages: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="status")
        with Horizontal(id="buttons"):
            for name in TRANSITIONS:
                yield Button(name, id=f"do-{name}")
        # disabled while hidden, so it never takes the keys meant for the transitions
        yield Input(
            placeholder="configuration file (YAML or JSON), Enter to load", id="config-path", disabled=True
        )
        yield RichLog(id="log", wrap=True, highlight=False, markup=False)
        yield Footer()

    async def on_mount(self) -> None:
        self.sub_title = self.client.address
        if self.config_path is not None:
            self._load(self.config_path)
        self._show()
        await self.poll()
        self.set_interval(self.poll_seconds, self.poll)
        self.run_worker(self.watch_device_events(), exclusive=True)

    # -- state ---------------------------------------------------------------------------------

    def _show(self) -> None:
        pid = f"  pid {self.pid}" if self.pid else ""
        config = f"  config: {len(self.config)} key(s) for the next CONFIGURE" if self.config else ""
        self.query_one("#status", Static).update(f"{self.client.address}  state: {self.state}{pid}{config}")
        allowed = {str(event) for event in allowed_events(self.state)}
        for name in TRANSITIONS:
            self.query_one(f"#do-{name}", Button).disabled = self.busy or name not in allowed

    def log_line(self, text: str) -> None:
        self.messages.append(text)
        self.query_one("#log", RichLog).write(text)

    async def watch_device_events(self) -> None:
        """Show the process's device events; resubscribe when the process comes back."""
        while True:
            try:
                async with self.client.subscribe_events(timeout=None) as events:
                    self.events_subscribed = True
                    async for name in events:
                        self.log_line(f"device event: {name}")
            except OccError:
                pass
            self.events_subscribed = False
            await asyncio.sleep(self.poll_seconds)  # poll: wait for the process to be back

    async def poll(self) -> None:
        if self.busy:
            return
        try:
            self.state, self.pid = await self.client.get_state()
        except OccError:
            self.state, self.pid = UNREACHABLE, 0
        self._show()

    # -- actions -------------------------------------------------------------------------------

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        name = (event.button.id or "").removeprefix("do-")
        if name in TRANSITIONS:
            await self.transition(name)

    async def action_transition(self, name: str) -> None:
        if name not in {str(event) for event in allowed_events(self.state)}:
            self.log_line(f"{name} is not possible from {self.state}")
            return
        await self.transition(name)

    async def transition(self, name: str) -> None:
        if self.busy:
            self.log_line(f"{name}: a transition is already running")
            return
        args = self.config if name == "CONFIGURE" else {}
        self.busy = True
        self._show()  # no second transition while this one runs
        try:
            source = self.state
            result = await self.client.transition(source, name, args)
        except OccError as exc:
            self.log_line(f"{name}: {exc}")
        else:
            verdict = "ok" if result.ok else "FAILED" + (f": {result.error}" if result.error else "")
            pushed = f" with {len(args)} argument(s)" if args else ""
            self.log_line(f"{name}{pushed}: {source} -> {result.state} ({result.trigger}) {verdict}")
            self.state = result.state
        finally:
            self.busy = False
        await self.poll()

    async def action_reconnect(self) -> None:
        await self.client.close()
        self.state, self.pid = CONNECTING, 0
        self._show()
        self.log_line(f"reconnecting to {self.client.address}")
        await self.poll()

    def action_load_config(self) -> None:
        box = self.query_one("#config-path", Input)
        box.disabled = False
        box.add_class("visible")
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.remove_class("visible")
        event.input.disabled = True
        if event.value.strip():
            self._load(Path(event.value.strip()).expanduser())
            self._show()

    def _load(self, path: Path) -> None:
        try:
            self.config = load_config(path)
        except ConfigError as exc:
            self.log_line(f"config: {exc}")
            return
        self.config_path = path
        self.log_line(f"config: {len(self.config)} key(s) from {path}, pushed at the next CONFIGURE")

    async def on_unmount(self) -> None:
        await self.client.close()


def run_tui(client: OccClient, config: Path | None = None) -> None:
    PeanutApp(client, config).run()
