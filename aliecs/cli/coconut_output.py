"""How coconut prints: aligned tables, trees, key/value blocks, coloured states, spinners, JSON.

One `Output` per invocation carries the user's choices (--nocolor, --nospinner, -o json) so each
command only says *what* to show.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import betterproto
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from aliecs.generated import events as events_pb
from aliecs.generated import o2control as pb

STATE_STYLES = {
    "RUNNING": "bold green",
    "CONFIGURED": "cyan",
    "DEPLOYED": "blue",
    "STANDBY": "white",
    "ERROR": "bold red",
    "MIXED": "yellow",
    "DONE": "dim",
    "PENDING": "magenta",
    "ACTIVE": "green",
    "INACTIVE": "dim",
    "DONE_OK": "green",
    "DONE_ERROR": "bold red",
    "STARTED": "cyan",
}


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def format_ms(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


class Output:
    def __init__(self, color: bool = True, spinner: bool = True, fmt: str = "text") -> None:
        self.console = Console(no_color=not color, highlight=False, soft_wrap=True)
        if not self.console.is_terminal:
            # Piped output (scripts, less, grep) gets whole lines instead of the 80-column default.
            self.console.width = 1000
        self.errors = Console(stderr=True, no_color=not color, highlight=False, soft_wrap=True)
        self.spinner = spinner and self.console.is_terminal
        self.json = fmt == "json"

    @contextmanager
    def waiting(self, message: str) -> Iterator[Callable[[str], None] | None]:
        """A spinner while a long request runs (only on a terminal, and never with -o json); gives a
        function that replaces its text (progress), or None when no spinner is shown."""
        if not self.spinner or self.json:
            yield None
            return
        with self.console.status(message) as status:
            yield lambda text: status.update(text)

    def print(self, *items: Any) -> None:
        self.console.print(*items)

    def error(self, message: str) -> None:
        self.errors.print(Text(f"coconut: error: {message}", style="red"))

    def dump(self, data: Any) -> None:
        if isinstance(data, betterproto.Message):
            data = data.to_dict(include_default_values=True)
        elif isinstance(data, list):
            data = [
                m.to_dict(include_default_values=True) if isinstance(m, betterproto.Message) else m
                for m in data
            ]
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
        table = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in row))
        self.console.print(table)

    def block(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """`key:   value` lines with the values aligned."""
        width = max((len(key) for key, _value in pairs), default=0) + 1
        for key, value in pairs:
            line = Text(f"{key + ':':<{width}} ", style="bold")
            line.append_text(value if isinstance(value, Text) else Text(str(value)))
            self.console.print(line)

    def mapping(self, title: str, values: Mapping[str, str]) -> None:
        if not values:
            self.console.print(Text(f"{title}: (none)", style="bold"))
            return
        self.console.print(Text(f"{title}:", style="bold"))
        width = max(len(key) for key in values)
        for key in sorted(values):
            self.console.print(f"  {key:<{width}}  {values[key]}")


def role_label(role: pb.RoleInfo) -> Text:
    label = Text("[ ")
    label.append_text(state_text(role.state or "UNKNOWN"))
    label.append(" ] ")
    label.append(role.name, style="bold")
    if role.status:
        label.append(f"  {role.status}", style=STATE_STYLES.get(role.status, "dim"))
    return label


def role_tree(
    root: pb.RoleInfo, tasks: Mapping[str, pb.ShortTaskInfo] | None = None, environment_state: str = ""
) -> Tree:
    """The role tree; the root is the environment, so it shows the environment's state (its tasks'
    aggregate can differ: DEPLOYED environments have STANDBY tasks) with the aggregate beside it."""
    label = role_label(root)
    if environment_state and environment_state != root.state:
        label = role_label(pb.RoleInfo(name=root.name, state=environment_state, status=root.status))
        label.append(f"  (tasks {root.state or 'UNKNOWN'})", style="dim")
    tree = Tree(label)

    def visit(node: pb.RoleInfo, branch: Tree) -> None:
        for child in node.roles:
            label = role_label(child)
            if not child.roles and tasks and len(child.task_ids) == 1 and child.task_ids[0] in tasks:
                task = tasks[child.task_ids[0]]
                label.append(f"  -> {task.deployment_info.hostname} pid {task.pid or '-'}", style="dim")
            visit(child, branch.add(label))

    visit(root, tree)
    return tree


def event_line(event: events_pb.Event) -> Text:
    """One line per event for `env watch` and `env create --auto`."""
    kind, found = betterproto.which_one_of(event, "Payload")
    payload: Any = found
    stamp = datetime.fromtimestamp(event.timestamp / 1000).strftime("%H:%M:%S.%f")[:-3]
    line = Text(f"{stamp} ")
    if kind == "environment_event":
        line.append("environment ", style="bold")
        line.append(f"{payload.environment_id} ")
        line.append_text(state_text(payload.state))
        if payload.transition:
            line.append(f" {payload.transition} ")
            line.append_text(state_text(payload.transition_status.name))
        if payload.run_number:
            line.append(f" run {payload.run_number}")
        if payload.error:
            line.append(f" error: {payload.error}", style="red")
        elif payload.transition == "AUTO" and payload.message:
            line.append(f" {payload.message}", style="dim")
    elif kind == "task_event":
        line.append("task ", style="bold")
        line.append(f"{payload.name} ")
        line.append_text(state_text(payload.state))
        line.append(f" {payload.status} on {payload.hostname}", style="dim")
    elif kind == "role_event":
        line.append("role ", style="bold")
        line.append(f"{payload.role_path} ")
        line.append_text(state_text(payload.state))
    elif kind == "run_event":
        line.append("run ", style="bold")
        line.append(f"{payload.run_number} {payload.transition} ")
        line.append_text(state_text(payload.transition_status.name))
    else:
        line.append(f"{kind} {payload.to_dict()}")
    return line
