"""Workflow templates: expand a YAML role tree into a workflow of concrete roles.

A role's kind is decided by its keys, as in the original: `for` makes an iterator (its other keys
are the template of each generated role), otherwise exactly one of `roles` (aggregator) or `task`
(task role) must be present. Each role carries three variable layers (defaults < vars < user
variables), each inherited from its parent and overridden by the child; template strings are
rendered with the consolidated stack in the original's stage order (enabled, defaults, vars, name
and task.load, then channels and constraints).

The result is plain data (`Role` trees); the control system turns it into actors at DEPLOY.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aliecs.workflow.errors import TemplateError
from aliecs.workflow.render import plain, render_value, role_scope, variables_of
from aliecs.workflow.repository import TemplateRepository
from aliecs.workflow.taskclass import ChannelTemplate, TaskClass, TaskClassCache, channel_templates
from aliecs.workflow.yamlsource import TemplateSourceError, load_yaml

ROLE_KINDS = ("roles", "task", "call", "include")
_COMMON_KEYS = {"name", "description", "enabled", "defaults", "vars", "constraints", "connect", "bind"}
_TASK_KEYS = {"load", "critical", "trigger", "await", "timeout"}


@dataclass(frozen=True)
class Channel:
    """A rendered channel of a role: for `connect`, `target` is `role.path:channel` or an address."""

    name: str
    type: str
    target: str = ""
    transport: str = "default"
    snd_buf_size: str = "1000"
    rcv_buf_size: str = "1000"
    rate_logging: str = "0"
    addressing: str = "tcp"


@dataclass(frozen=True)
class TaskRef:
    load: str
    task_class: TaskClass
    critical: bool = True


@dataclass
class Role:
    name: str
    path: str
    kind: str  # "aggregator" or "task"
    defaults: dict[str, str]
    vars: dict[str, str]
    user_vars: dict[str, str]
    children: list[Role] = field(default_factory=list)
    task: TaskRef | None = None
    connect: list[Channel] = field(default_factory=list)
    bind: list[Channel] = field(default_factory=list)
    constraints: dict[str, str] = field(default_factory=dict)
    parent: Role | None = field(default=None, repr=False, compare=False)

    @property
    def stack(self) -> dict[str, str]:
        """The consolidated variables: user vars over vars over defaults."""
        return {**self.defaults, **self.vars, **self.user_vars}

    def walk(self) -> Iterator[Role]:
        yield self
        for child in self.children:
            yield from child.walk()

    def task_roles(self) -> list[Role]:
        return [role for role in self.walk() if role.task is not None]

    def find(self, path: str) -> Role | None:
        return next((role for role in self.walk() if role.path == path), None)


@dataclass
class Workflow:
    name: str
    source: str
    root: Role
    description: str = ""


def _truthy_enabled(value: str) -> bool:
    return value.strip().lower() in ("true", "1")


class _Expander:
    def __init__(self, repository: TemplateRepository, user_vars: Mapping[str, str], source: str) -> None:
        self.repository = repository
        self.user_vars = dict(user_vars)
        self.source = source
        self.classes = TaskClassCache(repository)

    def error(self, message: str, role_path: str) -> TemplateError:
        return TemplateError(message, file=self.source, role_path=role_path)

    def render(
        self,
        text: Any,
        stack: Mapping[str, str],
        role_path: str,
        parent: Role | None,
        this: Role | None = None,
    ) -> str:
        """Render one template field; `Parent()`/`Up(n)`/`This()` see the role being processed."""
        return render_value(
            "" if text is None else str(text),
            stack,
            file=self.source,
            role_path=role_path,
            scope_extra=role_scope(parent, this),
        )

    def expand(self, spec: Any, parent: Role | None) -> list[Role]:
        """Expand one role template into zero (disabled), one, or many (iterator) roles."""
        parent_path = parent.path if parent else ""
        if not isinstance(spec, Mapping):
            raise self.error("a role must be a mapping", parent_path)
        if "for" in spec:
            return self.expand_iterator(spec, parent)
        role = self.expand_single(spec, parent, extra_vars={})
        return [role] if role is not None else []

    def expand_iterator(self, spec: Mapping[str, Any], parent: Role | None) -> list[Role]:
        parent_path = parent.path if parent else ""
        loop = spec["for"]
        if not isinstance(loop, Mapping) or "var" not in loop:
            raise self.error("'for' needs 'var' and either 'range' or 'begin'/'end'", parent_path)
        var = str(loop["var"])
        stack = parent.stack if parent else self.user_vars
        if "range" in loop:
            rendered = self.render(loop["range"], stack, parent_path, parent)
            try:
                items = json.loads(rendered)
            except json.JSONDecodeError as exc:
                raise self.error(f"for.range {rendered!r} is not a JSON list", parent_path) from exc
            if not isinstance(items, list):
                raise self.error(f"for.range {rendered!r} is not a list", parent_path)
            values = [item if isinstance(item, str) else json.dumps(item) for item in items]
        elif "begin" in loop and "end" in loop:
            begin_text = self.render(loop["begin"], stack, parent_path, parent)
            end_text = self.render(loop["end"], stack, parent_path, parent)
            try:
                begin, end = int(begin_text), int(end_text)
            except ValueError as exc:
                raise self.error(
                    f"for.begin/end must be integers, got {begin_text!r} and {end_text!r}", parent_path
                ) from exc
            values = [str(i) for i in range(begin, end + 1)]
        else:
            raise self.error("'for' needs either 'range' or 'begin' and 'end'", parent_path)
        name_template = str(spec.get("name", ""))
        if var not in name_template:
            raise self.error(
                f"iterator role name {name_template!r} must use the iterator variable {var!r}", parent_path
            )
        body = {key: value for key, value in spec.items() if key != "for"}
        roles = []
        for value in values:
            role = self.expand_single(body, parent, extra_vars={var: value})
            if role is not None:
                roles.append(role)
        return roles

    def expand_single(
        self, spec: Mapping[str, Any], parent: Role | None, extra_vars: dict[str, str]
    ) -> Role | None:
        parent_path = parent.path if parent else ""
        present = [kind for kind in ROLE_KINDS if kind in spec]
        if len(present) != 1:
            what = "none" if not present else ", ".join(present)
            raise self.error(
                f"a role needs exactly one of {', '.join(ROLE_KINDS)} (found {what}) "
                f"in role {spec.get('name', '?')!r}",
                parent_path,
            )
        kind = present[0]
        if kind in ("call", "include"):
            raise self.error(f"'{kind}' roles are not supported yet", parent_path)
        unknown = set(spec) - _COMMON_KEYS - set(ROLE_KINDS)
        if unknown:
            raise self.error(f"unknown keys {sorted(unknown)} in role {spec.get('name', '?')!r}", parent_path)

        parent_defaults = dict(parent.defaults) if parent else {}
        parent_vars = dict(parent.vars) if parent else {}
        # Stage 0: enabled, evaluated with the parent's stack (plus the iterator variable).
        base_stack = {**(parent.stack if parent else self.user_vars), **extra_vars}
        if "enabled" in spec and not _truthy_enabled(
            self.render(spec["enabled"], base_stack, parent_path, parent)
        ):
            return None
        # Stage 1-3: defaults, vars, user vars, each rendered with what is known so far.
        defaults = {**parent_defaults}
        for key, value in variables_of(spec.get("defaults")).items():
            defaults[key] = self.render(value, {**defaults, **parent_vars, **extra_vars, **self.user_vars},
                                        parent_path, parent)  # fmt: skip
        variables = {**parent_vars, **extra_vars}
        for key, value in variables_of(spec.get("vars")).items():
            variables[key] = self.render(
                value, {**defaults, **variables, **self.user_vars}, parent_path, parent
            )
        stack = {**defaults, **variables, **self.user_vars}
        # Stage 4: name and task.load.
        name = self.render(spec.get("name", ""), stack, parent_path, parent).strip()
        if not name:
            raise self.error("every role needs a non-empty 'name'", parent_path)
        path = f"{parent_path}.{name}" if parent_path else name
        role = Role(
            name=name,
            path=path,
            kind="aggregator" if kind == "roles" else "task",
            defaults=defaults,
            vars=variables,
            user_vars=dict(self.user_vars),
            constraints=dict(parent.constraints) if parent else {},
            parent=parent,
        )
        # Stage 5: constraints and channels, with the role itself known (This()).
        for item in plain(spec.get("constraints")) or []:
            if not isinstance(item, Mapping) or "attribute" not in item:
                raise self.error("constraints items need 'attribute' and 'value'", path)
            role.constraints[str(item["attribute"])] = self.render(
                item.get("value", ""), stack, path, parent, role
            )
        inherited = {channel.name: channel for channel in (parent.connect if parent else [])}
        for template in channel_templates(plain(spec.get("connect")), self.source, "connect"):
            inherited[template.name] = self.channel(template, stack, path, role)
        role.connect = list(inherited.values())
        role.bind = [
            self.channel(template, stack, path, role)
            for template in channel_templates(plain(spec.get("bind")), self.source, "bind")
        ]
        if kind == "roles":
            children_specs = spec["roles"]
            if not isinstance(children_specs, list):
                raise self.error("'roles' must be a list", path)
            for child_spec in children_specs:
                role.children.extend(self.expand(child_spec, role))
            if not role.children and children_specs:
                return None  # every child disabled: the aggregator is disabled too
        else:
            role.task = self.task_ref(spec["task"], stack, path, role)
        return role

    def channel(self, template: ChannelTemplate, stack: Mapping[str, str], path: str, role: Role) -> Channel:
        def field_value(key: str, default: str) -> str:
            raw = template.fields.get(key, default)
            return self.render(raw, stack, path, role.parent, role)

        return Channel(
            name=self.render(template.name, stack, path, role.parent, role),
            type=self.render(template.type, stack, path, role.parent, role),
            target=field_value("target", ""),
            transport=field_value("transport", "default"),
            snd_buf_size=field_value("sndBufSize", "1000"),
            rcv_buf_size=field_value("rcvBufSize", "1000"),
            rate_logging=field_value("rateLogging", "0"),
            addressing=field_value("addressing", "tcp"),
        )

    def task_ref(self, spec: Any, stack: Mapping[str, str], path: str, role: Role) -> TaskRef:
        if not isinstance(spec, Mapping) or "load" not in spec:
            raise self.error("'task' needs 'load: <task descriptor name>'", path)
        unknown = set(spec) - _TASK_KEYS
        if unknown:
            raise self.error(f"unknown keys {sorted(unknown)} in 'task'", path)
        load = self.render(spec["load"], stack, path, role.parent, role).strip()
        critical = str(spec.get("critical", "true")).strip().lower() not in ("false", "no", "0")
        try:
            task_class = self.classes.get(load)
        except TemplateError:
            raise
        except Exception as exc:  # repository errors name the missing descriptor
            raise self.error(str(exc), path) from exc
        return TaskRef(load=load, task_class=task_class, critical=critical)


def load_workflow(
    repository: TemplateRepository, name: str, user_vars: Mapping[str, str] | None = None
) -> Workflow:
    """Read, parse and expand workflow `name` from `repository` with the user's variables."""
    source = repository.read_workflow(name)
    try:
        document = load_yaml(source.text, source.path)
    except TemplateSourceError as exc:
        raise TemplateError(str(exc)) from exc
    if not isinstance(document, Mapping):
        raise TemplateError("a workflow template must be a mapping (the root role)", file=source.path)
    root_name = str(plain(document.get("name", "")))
    if root_name != name:
        raise TemplateError(
            f"the root role's name {root_name!r} must equal the file name {name!r}", file=source.path
        )
    expander = _Expander(repository, {k: str(v) for k, v in (user_vars or {}).items()}, source.path)
    roles = expander.expand(document, None)
    if not roles:
        raise TemplateError("every role of the workflow is disabled", file=source.path)
    return Workflow(
        name=name, source=source.path, root=roles[0], description=str(plain(document.get("description", "")))
    )
