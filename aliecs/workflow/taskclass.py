"""Task descriptors (task classes): how to start and configure one kind of process.

A task class is loaded once from `tasks/<name>.yaml` and rendered per task with the variable stack
of the role that loads it, at DEPLOY (command line, environment) and at CONFIGURE (properties).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aliecs.cluster.placement import Wants
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.render import plain, render_value, variables_of
from aliecs.workflow.repository import SourceFile, TemplateRepository
from aliecs.workflow.yamlsource import TemplateSourceError, load_yaml, position

CONTROL_MODES = ("direct", "fairmq", "basic", "hook")
_KNOWN_KEYS = {
    "name", "control", "wants", "limits", "bind", "connect", "properties", "constraints",
    "command", "defaults", "vars",
}  # fmt: skip
_PORTS = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
_COMMAND_KEYS = {"env", "shell", "value", "arguments", "user", "stdout", "stderr", "log"}


@dataclass(frozen=True)
class ChannelTemplate:
    """A channel as written in a template (strings, maybe containing `{{ }}`)."""

    name: str
    type: str
    fields: Mapping[str, str] = field(default_factory=dict)  # transport, sndBufSize, target, ...


@dataclass(frozen=True)
class RenderedCommand:
    value: str
    arguments: tuple[str, ...]
    env: dict[str, str]
    shell: bool
    user: str
    stdout: str
    stderr: str


@dataclass(frozen=True)
class TaskClass:
    name: str
    identifier: str
    source: str
    control_mode: str
    defaults: Mapping[str, str]
    vars: Mapping[str, str]
    command: Mapping[str, Any]
    wants: Wants
    bind: tuple[ChannelTemplate, ...]
    properties: Mapping[str, str]
    constraints: Mapping[str, str]
    ports: str = ""  # wants.ports: a range expression such as "29000-29100,30000"
    limits: Wants | None = None  # absent means unlimited

    def stack_for(
        self, role_stack: Mapping[str, str], special: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The task's variables: class defaults and vars, overridden by the role's stack.

        As in `BuildTaskCommand`, the class defaults are rendered against the role stack (plus the
        special task variables) only, so one default cannot see another; the class vars then see
        the defaults. Both lose to the role stack.
        """
        base = {**role_stack, **(special or {})}
        owner = base.get("task_name") or self.name  # the role path when the task is known
        defaults = {
            key: render_value(value, base, file=self.source, role_path=f"{owner} (defaults.{key})")
            for key, value in self.defaults.items()
        }
        with_defaults = {**defaults, **base}
        variables = {
            key: render_value(value, with_defaults, file=self.source, role_path=f"{owner} (vars.{key})")
            for key, value in self.vars.items()
        }
        stack: dict[str, str] = {}
        stack.update(defaults)
        stack.update(variables)
        stack.update(base)
        return stack

    def render_command(self, stack: Mapping[str, str], role_path: str) -> RenderedCommand:
        where = f"{self.source} (command)"

        def text(key: str, default: str = "") -> str:
            raw = self.command.get(key, default)
            return render_value(str(raw), stack, file=where, role_path=role_path)

        value = text("value").strip()
        if not value:
            raise TemplateError("task command 'value' is empty", file=self.source, role_path=role_path)
        arguments = tuple(
            render_value(str(arg), stack, file=where, role_path=role_path)
            for arg in self.command.get("arguments") or ()
        )
        env: dict[str, str] = {}
        for entry in self.command.get("env") or ():
            rendered = render_value(str(entry), stack, file=where, role_path=role_path)
            key, sep, val = rendered.partition("=")
            if not sep or not key:
                raise TemplateError(
                    f"command env entry {rendered!r} is not KEY=VALUE", file=self.source, role_path=role_path
                )
            env[key] = val
        shell = str(self.command.get("shell", "false")).strip().lower() in ("true", "yes", "1")
        return RenderedCommand(
            value=value,
            arguments=arguments,
            env=env,
            shell=shell,
            user=text("user"),
            stdout=self._output(text("stdout", self.command.get("log", "none")) or "none", role_path),
            stderr=self._output(text("stderr", "none") or "none", role_path),
        )

    def _output(self, value: str, role_path: str) -> str:
        """`command.stdout`/`stderr` must be none, stdout or all, otherwise the task cannot be built."""
        value = value.strip()
        if value not in ("none", "stdout", "all"):
            raise TemplateError(
                f"command output {value!r} must be one of none, stdout, all",
                file=self.source,
                role_path=role_path,
            )
        return value

    def render_properties(self, stack: Mapping[str, str], role_path: str) -> dict[str, str]:
        where = f"{self.source} (properties)"
        return {
            key: render_value(str(value), stack, file=where, role_path=role_path)
            for key, value in self.properties.items()
        }


def _float(value: Any, what: str, source: SourceFile) -> float:
    try:
        return float(str(value))
    except ValueError as exc:
        raise TemplateError(f"{what} must be a number, got {value!r}", file=source.path) from exc


def channel_templates(items: Any, where: str, kind: str) -> tuple[ChannelTemplate, ...]:
    """Parse a `bind:` or `connect:` list (each item needs a name and a type)."""
    if items in (None, ""):
        return ()
    if not isinstance(items, list):
        raise TemplateError(f"'{kind}' must be a list of channels", file=where)
    channels = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or not item.get("name"):
            raise TemplateError(f"{kind}[{index}] needs at least a 'name'", file=where)
        fields = {str(k): str(v) for k, v in item.items() if k not in ("name", "type")}
        channels.append(
            ChannelTemplate(name=str(item["name"]), type=str(item.get("type", "")), fields=fields)
        )
    return tuple(channels)


def _constraints(items: Any, where: str) -> dict[str, str]:
    if items in (None, ""):
        return {}
    if not isinstance(items, list):
        raise TemplateError("'constraints' must be a list of {attribute, value}", file=where)
    result = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or "attribute" not in item:
            raise TemplateError(f"constraints[{index}] needs 'attribute' and 'value'", file=where)
        result[str(item["attribute"])] = str(item.get("value", ""))
    return result


def parse_task_class(source: SourceFile, expected_name: str) -> TaskClass:
    """A task class from its descriptor (cached by content: classes are immutable)."""
    return _parse_task_class(source, expected_name)


@functools.lru_cache(maxsize=1024)
def _parse_task_class(source: SourceFile, expected_name: str) -> TaskClass:
    try:
        raw = load_yaml(source.text, source.path)
    except TemplateSourceError as exc:
        raise TemplateError(exc.message, file=exc.file, line=exc.line, column=exc.column) from exc
    document = plain(raw)

    def line(*keys: str) -> int | None:
        """The line of the first of `keys` present in the descriptor (None when unknown)."""
        for key in keys:
            where = position(raw, key)
            if where:
                return where[0]
        return None

    if not isinstance(document, dict):
        raise TemplateError("a task descriptor must be a mapping", file=source.path)
    unknown = set(document) - _KNOWN_KEYS
    if unknown:
        raise TemplateError(
            f"unknown keys {sorted(unknown)} in task descriptor",
            file=source.path,
            line=line(*sorted(unknown)),
        )
    control = document.get("control") or {}
    mode = str(control.get("mode", "direct")) if isinstance(control, dict) else "direct"
    if mode not in CONTROL_MODES:
        raise TemplateError(
            f"control mode {mode!r} is not one of {', '.join(CONTROL_MODES)}",
            file=source.path,
            line=line("control"),
        )
    command = document.get("command")
    if not isinstance(command, dict) or "value" not in command:
        raise TemplateError(
            "task descriptor needs a 'command' with a 'value'", file=source.path, line=line("command")
        )
    bad = set(command) - _COMMAND_KEYS
    if bad:
        raise TemplateError(
            f"unknown keys {sorted(bad)} in 'command'", file=source.path, line=line("command")
        )
    wants_raw = document.get("wants") or {}
    if not isinstance(wants_raw, dict):
        raise TemplateError(
            "'wants' must be a mapping of cpu/memory/ports", file=source.path, line=line("wants")
        )
    wants = Wants(
        cpu=_float(wants_raw.get("cpu", 0), "wants.cpu", source),
        memory=_float(wants_raw.get("memory", 0), "wants.memory", source),
    )
    ports = str(wants_raw.get("ports") or "")
    if ports and not _PORTS.fullmatch(ports.replace(" ", "")):
        raise TemplateError(
            f"wants.ports {ports!r} is not a list of ports and ranges", file=source.path, line=line("wants")
        )
    limits_raw = document.get("limits")
    limits = None
    if limits_raw not in (None, ""):
        if not isinstance(limits_raw, dict):
            raise TemplateError("'limits' must be a mapping of cpu/memory", file=source.path)
        limits = Wants(
            cpu=_float(limits_raw.get("cpu", "inf"), "limits.cpu", source),
            memory=_float(limits_raw.get("memory", "inf"), "limits.memory", source),
        )

    def string_map(key: str) -> dict[str, str]:
        """A map of strings; a `!public` entry gives its `value` (the rest is GUI metadata)."""
        raw = document.get(key) or {}
        if not isinstance(raw, dict):
            raise TemplateError(f"'{key}' must be a mapping", file=source.path, line=line(key))
        return variables_of(raw)

    return TaskClass(
        name=str(document.get("name", expected_name)),
        identifier=source.identifier,
        source=source.path,
        control_mode=mode,
        defaults=string_map("defaults"),
        vars=string_map("vars"),
        command=command,
        wants=wants,
        bind=channel_templates(document.get("bind"), source.path, "bind"),
        properties=string_map("properties"),
        constraints=_constraints(document.get("constraints"), source.path),
        ports=ports,
        limits=limits,
    )


class TaskClassCache:
    """Task classes loaded once per workflow load (descriptors are shared by many roles)."""

    def __init__(self, repository: TemplateRepository) -> None:
        self.repository = repository
        self._classes: dict[str, TaskClass] = {}

    def get(self, name: str) -> TaskClass:
        cached = self._classes.get(name)
        if cached is None:
            cached = parse_task_class(self.repository.read_task(name), name)
            self._classes[name] = cached
        return cached
