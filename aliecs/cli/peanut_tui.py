"""peanut's interactive mode: drive one OCC process with buttons, as the original's TUI does.

Run `peanut` with no command. One button per transition (CONFIGURE, RESET, START, STOP, RECOVER,
EXIT); the state is polled every 2 s and shown as CONNECTING, UNREACHABLE or the process's state.
A configuration file (YAML or JSON, nested maps flattened to dotted keys, `a: {b: 1}` -> `a.b=1`)
is pushed as the CONFIGURE arguments: give it with `--config FILE` or load one with `l`. Keys: `n`
reconnect, `l` load a configuration, `q` quit.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Button, Footer, Header, Input, Log, Static

from aliecs.cli.peanut_config import ConfigError, flatten, load_config
from aliecs.occ.client import OccClient
from aliecs.occ.errors import OccError

#: Button label -> OCC event. GO_ERROR is deliberately absent: peanut cannot trigger it.
TRANSITIONS = ("CONFIGURE", "RESET", "START", "STOP", "RECOVER", "EXIT")
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

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="status")
        with Horizontal(id="buttons"):
            for name in TRANSITIONS:
                yield Button(name, id=f"do-{name}")
        yield Input(placeholder="configuration file (YAML or JSON), Enter to load", id="config-path")
        yield Log(id="log", highlight=False)
        yield Footer()

    async def on_mount(self) -> None:
        self.sub_title = self.client.address
        if self.config_path is not None:
            self._load(self.config_path)
        self._show()
        await self.poll()
        self.set_interval(self.poll_seconds, self.poll)

    # -- state ---------------------------------------------------------------------------------

    def _show(self) -> None:
        pid = f"  pid {self.pid}" if self.pid else ""
        config = f"  config: {len(self.config)} key(s) for the next CONFIGURE" if self.config else ""
        self.query_one("#status", Static).update(f"{self.client.address}  state: {self.state}{pid}{config}")

    def log_line(self, text: str) -> None:
        self.query_one("#log", Log).write_line(text)

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

    async def transition(self, name: str) -> None:
        if self.busy:
            self.log_line(f"{name}: a transition is already running")
            return
        args = self.config if name == "CONFIGURE" else {}
        self.busy = True
        try:
            source = self.state
            result = await self.client.transition(source, name, args)
        except OccError as exc:
            self.log_line(f"{name}: {exc}")
        else:
            verdict = "ok" if result.ok else "FAILED"
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
        box.add_class("visible")
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.remove_class("visible")
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
