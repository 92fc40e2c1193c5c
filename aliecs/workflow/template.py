"""Workflow templates: expand a YAML role tree into a workflow of concrete roles.

A role's kind is decided by its keys, as in the original: `for` makes an iterator (its other keys
are the template of each generated role), otherwise exactly one of `roles` (aggregator), `task`
(task role, a hook when it has a `trigger`), `call` (integration call) or `include` (a
sub-workflow, possibly from another repository or revision) must be present.

Each role carries three variable layers (defaults < vars < user variables), each inherited from
its parent and overridden by the child ("key presence wins", even for an empty value). Fields are
rendered in the original's stage order (`template.Sequence`, STAGE0..5):

0. `enabled`, against the parent's layers plus the iterator variable; a disabled role is pruned
   before anything else of it is evaluated (so disabled siblings may hold failing expressions);
1. the role's `defaults`, all against the same parent snapshot;
2. its `vars`, seeing its own defaults;
3. user variables;
4. `name`, `task.load`/`trigger`/`await`/`timeout`, `call.*` (except `func`), `include`;
5. constraint values, channel targets and `bind.global`, with `This()` available.

The iterator variable stays above every layer while the role is processed, then it is copied into
the role's `vars` so descendants and included sub-workflows see it. The result is plain data
(`Role` trees); the control system turns it into actors at DEPLOY.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aliecs.workflow.errors import TemplateError
from aliecs.workflow.functions import base_function_scope
from aliecs.workflow.jit import CommandGenerator, JitRegistry
from aliecs.workflow.limits import FOR_ITEMS_ENV, ROLES_ENV, TemplateLimits
from aliecs.workflow.providers import Providers, global_layers
from aliecs.workflow.render import plain, render_value, role_scope, variables_of
from aliecs.workflow.repository import SourceFile, TemplateRepository
from aliecs.workflow.taskclass import ChannelTemplate, TaskClass, TaskClassCache, channel_templates
from aliecs.workflow.yamlsource import PublicScalar, TemplateSourceError, load_yaml, position

ROLE_KINDS = ("roles", "task", "call", "include")
_COMMON_KEYS = {"name", "description", "enabled", "defaults", "vars", "constraints", "connect", "bind"}
_TASK_KEYS = {"load", "critical", "trigger", "await", "timeout"}
_CALL_KEYS = {"func", "return", "critical", "trigger", "await", "timeout"}
_KIND_NAMES = {"roles": "aggregator", "task": "task", "call": "call", "include": "include"}
DEFAULT_HOOK_TIMEOUT = "30s"

# Resolves an include or task reference that names another repository or revision
# (`repo/workflows/name@rev`) to the repository holding it and the bare name.
Resolver = Callable[[TemplateRepository, str, str], tuple[TemplateRepository, str]]


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
    global_name: str = ""


@dataclass(frozen=True)
class TaskRef:
    """What a task role runs; with a `trigger` it is a hook task run at that trigger point."""

    load: str
    task_class: TaskClass
    critical: bool = True
    trigger: str = ""
    await_: str = ""
    timeout: str = "0s"

    @property
    def is_hook(self) -> bool:
        return bool(self.trigger)

    @property
    def control_mode(self) -> str:
        """The original derives HOOK at runtime from a `basic` class used with a trigger."""
        mode = self.task_class.control_mode
        return "hook" if mode == "basic" and self.trigger else mode


@dataclass(frozen=True)
class CallSpec:
    """An integration call (`call:`): `func` is kept as written and rendered at trigger time."""

    func: str
    trigger: str
    await_: str
    timeout: str = DEFAULT_HOOK_TIMEOUT
    critical: bool = True
    return_var: str = ""


@dataclass
class Role:
    name: str
    path: str
    kind: str  # "aggregator", "include", "task" or "call"
    defaults: dict[str, str]
    vars: dict[str, str]
    user_vars: dict[str, str]
    children: list[Role] = field(default_factory=list)
    task: TaskRef | None = None
    connect: list[Channel] = field(default_factory=list)
    bind: list[Channel] = field(default_factory=list)
    constraints: dict[str, str] = field(default_factory=dict)
    parent: Role | None = field(default=None, repr=False, compare=False)
    call: CallSpec | None = None
    include: str = ""  # for include roles: the identifier of the included workflow
    source: str = ""  # the file the role was written in
    line: int | None = None
    iterator: str = ""  # the iterator that made this role (see `Workflow.iterators`), if any

    @property
    def stack(self) -> dict[str, str]:
        """The consolidated variables: user vars over vars over defaults."""
        return {**self.defaults, **self.vars, **self.user_vars}

    @property
    def is_hook(self) -> bool:
        return self.task is not None and self.task.is_hook

    def walk(self) -> Iterator[Role]:
        yield self
        for child in self.children:
            yield from child.walk()

    def task_roles(self) -> list[Role]:
        """The data-flow task roles (deployed at DEPLOY); hook tasks and calls are not included."""
        return [role for role in self.walk() if role.task is not None and not role.task.is_hook]

    def hook_roles(self) -> list[Role]:
        """Task roles with a trigger: run at their trigger point, not deployed with the rest."""
        return [role for role in self.walk() if role.is_hook]

    def call_roles(self) -> list[Role]:
        return [role for role in self.walk() if role.call is not None]

    def deployable_children(self) -> list[Role]:
        """Children the environment builds actors for at DEPLOY (no hooks, no calls)."""
        return [child for child in self.children if child.call is None and not child.is_hook]

    def find(self, path: str) -> Role | None:
        return next((role for role in self.walk() if role.path == path), None)


@dataclass
class Workflow:
    name: str
    source: str
    root: Role
    description: str = ""
    public: bool = False
    # Every iterator (`for`) of the expanded tree, by `parent.path.name-template`, and how many
    # roles it made; `load_workflow(iterator_counts=...)` sets their counts (scaling at runtime).
    iterators: dict[str, int] = field(default_factory=dict)

    def tasks(self) -> list[Role]:
        return self.root.task_roles()

    def hooks(self) -> list[Role]:
        return self.root.hook_roles()

    def calls(self) -> list[Role]:
        return self.root.call_roles()


def _truthy_enabled(value: str) -> bool:
    return value.strip().lower() in ("true", "1")


def _line(node: Any, key: Any = None) -> int | None:
    where = position(node, key)
    return where[0] if where else None


@dataclass(frozen=True)
class _Layers:
    """The flattened defaults and vars a role inherits (its parent's, or an include role's)."""

    defaults: Mapping[str, str]
    vars: Mapping[str, str]


@dataclass(frozen=True)
class _Context:
    """Where the role being expanded was written: its repository, file and the include chain."""

    repository: TemplateRepository
    source: str
    chain: tuple[str, ...]


def _repo_key(repository: TemplateRepository) -> tuple[str, str]:
    """A repository at one revision (two revisions of one repository can be in use at once)."""
    return repository.name, str(getattr(repository, "commit", getattr(repository, "revision", "")))


def _split_user_vars(user_vars: Mapping[str, Any]) -> dict[str, str]:
    # `role.path:key` entries are "workflow user vars"; the original splits them off and never uses them.
    return {str(k): str(v) for k, v in user_vars.items() if ":" not in str(k)}


class _Expander:
    def __init__(
        self,
        repository: TemplateRepository,
        user_vars: Mapping[str, str],
        providers: Providers,
        jit: JitRegistry,
        resolver: Resolver | None,
        iterator_counts: Mapping[str, int] | None = None,
    ) -> None:
        self.user_vars = dict(user_vars)
        self.iterator_counts = dict(iterator_counts or {})
        self.iterators: dict[str, int] = {}
        self.providers = providers
        self.jit = jit
        self.resolver = resolver
        self.classes: dict[tuple[str, str], TaskClassCache] = {}
        self._functions: dict[tuple[str, str], dict[str, Any]] = {}
        self._service_scope = providers.namespaces()
        self.limits = TemplateLimits.from_env()
        self.roles = 0

    # -- helpers ---------------------------------------------------------------------------------

    def functions(self, repository: TemplateRepository) -> dict[str, Any]:
        """Built-ins, services and `dpl.*` bound to `repository` (whose `jit/` is read)."""
        key = _repo_key(repository)
        scope = self._functions.get(key)
        if scope is None:
            dpl = self.jit.namespace(repository)
            scope = base_function_scope({**self._service_scope, "dpl": dpl, **self.jit.legacy_aliases(dpl)})
            self._functions[key] = scope
        return scope

    def error(
        self, message: str, ctx: _Context, role_path: str, node: Any = None, key: Any = None
    ) -> TemplateError:
        return TemplateError(message, file=ctx.source, line=_line(node, key), role_path=role_path)

    def render(
        self,
        text: Any,
        stack: Mapping[str, str],
        ctx: _Context,
        role_path: str,
        parent: Role | None,
        this: Role | None = None,
        node: Any = None,
        key: Any = None,
        objects: bool = True,
    ) -> str:
        """Render one template field; `Parent()`/`Up(n)`/`This()` see the role being processed."""
        return render_value(
            "" if text is None else str(text),
            stack,
            file=ctx.source,
            role_path=role_path,
            scope_extra=role_scope(parent, this) if objects else None,
            line=_line(node, key),
            functions=self.functions(ctx.repository),
        )

    # -- roles -----------------------------------------------------------------------------------

    def expand(self, spec: Any, parent: Role | None, layers: _Layers, ctx: _Context) -> list[Role]:
        """Expand one role template into zero (disabled), one, or many (iterator) roles."""
        parent_path = parent.path if parent else ""
        if not isinstance(spec, Mapping):
            raise self.error("a role must be a mapping", ctx, parent_path, spec)
        if "for" in spec:
            return self.expand_iterator(spec, parent, layers, ctx)
        role = self.expand_single(spec, parent, layers, {}, ctx)
        return [role] if role is not None else []

    def expand_iterator(
        self, spec: Mapping[str, Any], parent: Role | None, layers: _Layers, ctx: _Context
    ) -> list[Role]:
        parent_path = parent.path if parent else ""
        loop = spec["for"]
        if not isinstance(loop, Mapping) or "var" not in loop:
            raise self.error(
                "'for' needs 'var' and either 'range' or 'begin'/'end'", ctx, parent_path, spec, "for"
            )
        var = str(loop["var"])
        # The range sees the parent's flattened variables only (no role objects).
        stack = {**layers.defaults, **layers.vars, **self.user_vars}

        def text(key: str) -> str:
            return self.render(loop[key], stack, ctx, parent_path, parent, node=loop, key=key, objects=False)

        if "range" in loop:
            rendered = text("range")
            try:
                items = json.loads(rendered)
            except json.JSONDecodeError:
                items = None
            if not isinstance(items, list):
                raise self.error(
                    f"for.range must render to a JSON list, got {rendered!r}", ctx, parent_path, loop, "range"
                )
            self.check_for_items(len(items), ctx, parent_path, loop, "range")
            values = [item if isinstance(item, str) else json.dumps(item) for item in items]
            first = None
        elif "begin" in loop and "end" in loop:
            begin_text, end_text = text("begin"), text("end")
            try:
                begin, end = int(begin_text), int(end_text)
            except ValueError as exc:
                raise self.error(
                    f"for.begin/end must be integers, got {begin_text!r} and {end_text!r}",
                    ctx,
                    parent_path,
                    loop,
                    "begin",
                ) from exc
            self.check_for_items(end - begin + 1, ctx, parent_path, loop, "end")
            values = [str(i) for i in range(begin, end + 1)]
            first = begin
        else:
            raise self.error("'for' needs either 'range' or 'begin' and 'end'", ctx, parent_path, spec, "for")
        name_template = str(spec.get("name", ""))
        if var not in name_template:
            raise self.error(
                f"iterator role name {name_template!r} must use the iterator variable {var!r}",
                ctx,
                parent_path,
                spec,
                "name",
            )
        key = f"{parent_path}.{name_template}" if parent_path else name_template
        count = self.iterator_counts.get(key)
        if count is not None:
            values = self.scaled(values, count, first, ctx, parent_path, loop)
        self.iterators[key] = len(values)
        roles = []
        for value in values:
            role = self.expand_single(spec, parent, layers, {var: value}, ctx)
            if role is not None:
                role.iterator = key
                roles.append(role)
        return roles

    def scaled(
        self, values: list[str], count: int, first: int | None, ctx: _Context, parent_path: str, node: Any
    ) -> list[str]:
        """An iterator's values for `count` roles: begin/end ranges grow or shrink from `begin`,
        a `range` list can only be cut (it names its items)."""
        if count < 0:
            raise self.error(f"an iterator cannot make {count} roles", ctx, parent_path, node)
        self.check_for_items(count, ctx, parent_path, node, "end")
        if first is None:  # a `range` list
            if count > len(values):
                raise self.error(
                    f"for.range lists {len(values)} items: it cannot make {count} roles "
                    "(change the variable its range is made from instead)",
                    ctx,
                    parent_path,
                    node,
                    "range",
                )
            return values[:count]
        return [str(first + i) for i in range(count)]

    def check_for_items(self, count: int, ctx: _Context, parent_path: str, node: Any, key: str) -> None:
        if count > self.limits.for_items:
            raise self.error(
                f"'for' would generate {count} roles, over the limit of {self.limits.for_items} "
                f"per iterator (the core's {FOR_ITEMS_ENV} raises it)",
                ctx,
                parent_path,
                node,
                key,
            )

    def count_role(self, ctx: _Context, path: str, node: Any) -> None:
        """One more role in this environment; refuse past the per-environment limit."""
        self.roles += 1
        if self.roles > self.limits.roles:
            raise self.error(
                f"the environment would have more than {self.limits.roles} roles "
                f"(the core's {ROLES_ENV} raises the limit)",
                ctx,
                path,
                node,
            )

    def role_kind(self, spec: Mapping[str, Any], ctx: _Context, parent_path: str) -> str:
        present = [kind for kind in ROLE_KINDS if kind in spec]
        if len(present) != 1:
            what = "none" if not present else ", ".join(present)
            raise self.error(
                f"a role needs exactly one of {', '.join(ROLE_KINDS)} (found {what}) "
                f"in role {str(spec.get('name', '?'))!r}",
                ctx,
                parent_path,
                spec,
            )
        kind = present[0]
        unknown = set(spec) - _COMMON_KEYS - {kind, "for"}
        if unknown:
            raise self.error(
                f"unknown keys {sorted(unknown)} in {_KIND_NAMES[kind]} role {str(spec.get('name', '?'))!r}",
                ctx,
                parent_path,
                spec,
                sorted(unknown)[0],
            )
        return kind

    def expand_single(
        self,
        spec: Mapping[str, Any],
        parent: Role | None,
        layers: _Layers,
        local_vars: dict[str, str],
        ctx: _Context,
        forced_name: str | None = None,
    ) -> Role | None:
        parent_path = parent.path if parent else ""
        kind = self.role_kind(spec, ctx, parent_path)
        if forced_name is not None and kind != "roles":
            raise self.error(
                "the root of an included workflow must be an aggregator ('roles')", ctx, parent_path, spec
            )

        # Until the name is rendered (stage 4), errors name the role by its name as written.
        written = forced_name if forced_name is not None else str(spec.get("name", "?"))
        if local_vars:  # which iteration: `host-{{ it }}[it=flp001]`
            written += "[" + ",".join(f"{k}={v}" for k, v in local_vars.items()) + "]"
        pending_path = f"{parent_path}.{written}" if parent_path else written

        def render_here(text: Any, stack: Mapping[str, str], node: Any, key: Any) -> str:
            return self.render(text, stack, ctx, pending_path, parent, None, node, key)

        # Stage 0: enabled, evaluated with the parent's stack plus the iterator variable.
        stack0 = {**layers.defaults, **layers.vars, **self.user_vars, **local_vars}
        if "enabled" in spec and not _truthy_enabled(render_here(spec["enabled"], stack0, spec, "enabled")):
            return None
        self.count_role(ctx, pending_path, spec)
        # Stage 1: own defaults, all against the same parent snapshot.
        own_defaults = spec.get("defaults")
        defaults = dict(layers.defaults)
        for key, value in self.variables(own_defaults, ctx, pending_path).items():
            defaults[key] = render_here(value, stack0, own_defaults, key)
        # Stage 2: own vars, seeing the role's own defaults.
        stack2 = {**defaults, **layers.vars, **self.user_vars, **local_vars}
        own_vars = spec.get("vars")
        variables = dict(layers.vars)
        for key, value in self.variables(own_vars, ctx, pending_path).items():
            variables[key] = render_here(value, stack2, own_vars, key)
        # Stage 3 (user vars) has nothing to render: they come from the environment.
        stack = {**defaults, **variables, **self.user_vars, **local_vars}
        # Stage 4: name, then kind-specific fields.
        if forced_name is not None:
            name = forced_name
        else:
            name = render_here(spec.get("name", ""), stack, spec, "name").strip()
        if not name:
            raise self.error("every role needs a non-empty 'name'", ctx, parent_path, spec)
        path = f"{parent_path}.{name}" if parent_path else name
        variables.update(local_vars)  # the iterator variable becomes a var of the generated role
        role = Role(
            name=name,
            path=path,
            kind=_KIND_NAMES[kind],
            defaults=defaults,
            vars=variables,
            user_vars=dict(self.user_vars),
            constraints=dict(parent.constraints) if parent else {},
            parent=parent,
            source=ctx.source,
            line=_line(spec),
        )
        # Stage 5: constraints and channels, with the role itself known (This()).
        self.stage5(spec, role, stack, ctx)
        if kind == "roles":
            return self.expand_children(spec, role, ctx)
        if kind == "task":
            role.task = self.task_ref(spec["task"], stack, role, ctx)
            return role
        if kind == "call":
            role.call = self.call_spec(spec["call"], stack, role, ctx)
            return role
        return self.expand_include(spec, role, stack, ctx)

    def variables(self, node: Any, ctx: _Context, path: str) -> dict[str, str]:
        try:
            return variables_of(node)
        except TemplateError as exc:
            raise self.error(exc.message, ctx, path, node) from exc

    def stage5(self, spec: Mapping[str, Any], role: Role, stack: Mapping[str, str], ctx: _Context) -> None:
        constraints = spec.get("constraints")
        if constraints not in (None, ""):
            if not isinstance(constraints, list):
                raise self.error(
                    "'constraints' must be a list of {attribute, value}", ctx, role.path, spec, "constraints"
                )
            for index, item in enumerate(constraints):
                if not isinstance(item, Mapping) or "attribute" not in item:
                    raise self.error(
                        "constraints items need 'attribute' and 'value'", ctx, role.path, constraints, index
                    )
                role.constraints[str(item["attribute"])] = self.render(
                    item.get("value", ""), stack, ctx, role.path, role.parent, role, item, "value"
                )
        inherited = {channel.name: channel for channel in (role.parent.connect if role.parent else [])}
        try:
            connects = channel_templates(plain(spec.get("connect")), ctx.source, "connect")
            binds = channel_templates(plain(spec.get("bind")), ctx.source, "bind")
        except TemplateError as exc:
            raise self.error(
                exc.message, ctx, role.path, spec, "connect" if "connect" in spec else "bind"
            ) from exc
        for template in connects:
            channel = self.channel(template, stack, role, ctx, spec, "connect")
            inherited[channel.name] = channel
        role.connect = list(inherited.values())
        inherited_bind = {channel.name: channel for channel in (role.parent.bind if role.parent else [])}
        for template in binds:
            channel = self.channel(template, stack, role, ctx, spec, "bind")
            inherited_bind[channel.name] = channel
        role.bind = list(inherited_bind.values())

    def expand_children(self, spec: Mapping[str, Any], role: Role, ctx: _Context) -> Role | None:
        children_specs = spec["roles"]
        if not isinstance(children_specs, list):
            raise self.error("'roles' must be a list", ctx, role.path, spec, "roles")
        layers = _Layers(role.defaults, role.vars)
        for child_spec in children_specs:
            role.children.extend(self.expand(child_spec, role, layers, ctx))
        if not role.children and role.parent is not None:
            # Every child disabled: the aggregator is disabled too. The root stays (an environment
            # with nothing to run, as the TPC split workflows give on FLPs outside their ranges).
            return None
        return role

    def channel(
        self,
        template: ChannelTemplate,
        stack: Mapping[str, str],
        role: Role,
        ctx: _Context,
        node: Any,
        key: str,
    ) -> Channel:
        def field_value(name: str, default: str) -> str:
            raw = template.fields.get(name, default)
            return self.render(raw, stack, ctx, role.path, role.parent, role, node, key)

        return Channel(
            name=self.render(template.name, stack, ctx, role.path, role.parent, role, node, key),
            type=self.render(template.type, stack, ctx, role.path, role.parent, role, node, key),
            target=field_value("target", ""),
            transport=field_value("transport", "default") or "default",
            snd_buf_size=field_value("sndBufSize", "1000") or "1000",
            rcv_buf_size=field_value("rcvBufSize", "1000") or "1000",
            rate_logging=field_value("rateLogging", "0") or "0",
            addressing=field_value("addressing", "tcp") or "tcp",
            global_name=field_value("global", ""),
        )

    def traits(
        self,
        spec: Mapping[str, Any],
        stack: Mapping[str, str],
        role: Role,
        ctx: _Context,
        default_timeout: str,
    ) -> tuple[str, str, str, bool]:
        """trigger, await (defaults to trigger), timeout, critical (defaults to true)."""

        def text(key: str, default: str = "") -> str:
            if key not in spec or spec[key] is None:
                return default
            return self.render(spec[key], stack, ctx, role.path, role.parent, role, spec, key).strip()

        trigger = text("trigger")
        await_ = text("await") or trigger
        timeout = text("timeout") or (DEFAULT_HOOK_TIMEOUT if trigger else default_timeout)
        # `critical` is the one trait decoded as a real YAML bool (`*bool` in the original).
        critical_text = str(spec.get("critical", "true")).strip()
        if critical_text.lower() not in ("true", "false"):
            raise self.error(
                f"critical must be true or false, got {critical_text!r}", ctx, role.path, spec, "critical"
            )
        critical = critical_text.lower() == "true"
        return trigger, await_, timeout, critical

    def task_ref(self, spec: Any, stack: Mapping[str, str], role: Role, ctx: _Context) -> TaskRef:
        if not isinstance(spec, Mapping) or "load" not in spec:
            raise self.error("'task' needs 'load: <task descriptor name>'", ctx, role.path, spec)
        unknown = set(spec) - _TASK_KEYS
        if unknown:
            raise self.error(
                f"unknown keys {sorted(unknown)} in 'task'", ctx, role.path, spec, sorted(unknown)[0]
            )
        load = self.render(spec["load"], stack, ctx, role.path, role.parent, role, spec, "load").strip()
        trigger, await_, timeout, critical = self.traits(spec, stack, role, ctx, "0s")
        try:
            repository, name = self.resolve(ctx.repository, load, "tasks")
            cache = self.classes.setdefault(_repo_key(repository), TaskClassCache(repository))
            task_class = cache.get(name)
        except TemplateError as exc:
            if exc.role_path:
                raise
            raise TemplateError(
                exc.message, file=exc.file or ctx.source, line=exc.line, role_path=role.path
            ) from exc
        except Exception as exc:  # repository errors name the missing descriptor
            raise self.error(str(exc), ctx, role.path, spec, "load") from exc
        return TaskRef(
            load=load,
            task_class=task_class,
            critical=critical,
            trigger=trigger,
            await_=await_,
            timeout=timeout,
        )

    def call_spec(self, spec: Any, stack: Mapping[str, str], role: Role, ctx: _Context) -> CallSpec:
        if not isinstance(spec, Mapping) or not str(spec.get("func") or "").strip():
            raise self.error("'call' needs 'func: <plugin function>'", ctx, role.path, spec)
        unknown = set(spec) - _CALL_KEYS
        if unknown:
            raise self.error(
                f"unknown keys {sorted(unknown)} in 'call'", ctx, role.path, spec, sorted(unknown)[0]
            )
        # A call without a trigger is legal (and never fires), as in the original.
        trigger, await_, timeout, critical = self.traits(spec, stack, role, ctx, "0s")
        return_var = ""
        if spec.get("return"):
            return_var = self.render(
                spec["return"], stack, ctx, role.path, role.parent, role, spec, "return"
            ).strip()
        return CallSpec(
            func=str(spec["func"]).strip(),
            trigger=trigger,
            await_=await_,
            timeout=timeout,
            critical=critical,
            return_var=return_var,
        )

    # -- includes --------------------------------------------------------------------------------

    def resolve(
        self, repository: TemplateRepository, reference: str, folder: str
    ) -> tuple[TemplateRepository, str]:
        """`name`, `name@rev` or `repo/<folder>/name[@rev]` to (repository, bare name)."""
        if "/" not in reference and "@" not in reference:
            return repository, reference
        if self.resolver is None:
            raise TemplateError(
                f"{reference!r} names another repository or revision, but no repository manager is configured"
            )
        return self.resolver(repository, reference, folder)

    def expand_include(
        self, spec: Mapping[str, Any], role: Role, stack: Mapping[str, str], ctx: _Context
    ) -> Role | None:
        include = self.render(
            spec["include"], stack, ctx, role.path, role.parent, role, spec, "include"
        ).strip()
        if not include:
            raise self.error("'include' renders to an empty workflow name", ctx, role.path, spec, "include")
        generated = self.jit.generated.get(include)
        try:
            if generated is not None:
                source, jit_repo = generated
                repository = jit_repo or ctx.repository
                expected_name: str | None = None
            else:
                repository, name = self.resolve(ctx.repository, include, "workflows")
                source = repository.read_workflow(name)
                expected_name = name
        except TemplateError as exc:
            raise self.error(exc.message, ctx, role.path, spec, "include") from exc
        except Exception as exc:
            raise self.error(f"cannot include {include!r}: {exc}", ctx, role.path, spec, "include") from exc
        if source.identifier in ctx.chain:
            cycle = " -> ".join((*ctx.chain, source.identifier))
            raise self.error(f"include cycle: {cycle}", ctx, role.path, spec, "include")
        document = parse_workflow_document(source, expected_name)
        role.include = source.identifier
        sub_ctx = _Context(repository, source.path, (*ctx.chain, source.identifier))
        # The included root replaces the include role but keeps its name, its parent and its variable
        # layers (which the sub-root's defaults and vars wrap); its own channels/constraints win.
        sub = self.expand_single(
            document, role.parent, _Layers(role.defaults, role.vars), {}, sub_ctx, role.name
        )
        if sub is None:
            return None
        sub.kind = "include"
        sub.include = source.identifier
        return sub


@functools.lru_cache(maxsize=256)
def _parse_cached(text: str, path: str) -> Any:
    """Parsing dominates expansion time (ruamel is pure Python: ~0.2 s for readout-dataflow), and
    the same file text is expanded again for every environment; expansion never mutates the tree."""
    return load_yaml(text, path)


def parse_workflow_document(source: SourceFile, expected_name: str | None) -> Mapping[str, Any]:
    """Parse a workflow file; its root `name` must equal the file name (JIT exports excepted)."""
    try:
        document = _parse_cached(source.text, source.path)
    except TemplateSourceError as exc:
        raise TemplateError(exc.message, file=exc.file, line=exc.line, column=exc.column) from exc
    if not isinstance(document, Mapping):
        raise TemplateError("a workflow template must be a mapping (the root role)", file=source.path)
    root_name = str(plain(document.get("name", "")))
    if expected_name is not None and root_name != expected_name:
        raise TemplateError(
            f"the root role's name {root_name!r} must equal the file name {expected_name!r}",
            file=source.path,
            line=_line(document, "name"),
        )
    return document


def load_workflow(
    repository: TemplateRepository,
    name: str,
    user_vars: Mapping[str, Any] | None = None,
    *,
    providers: Providers | None = None,
    jit: JitRegistry | None = None,
    resolver: Resolver | None = None,
    iterator_counts: Mapping[str, int] | None = None,
) -> Workflow:
    """Read, parse and expand workflow `name` from `repository` with the user's variables.

    `name` may be `repo/workflows/name@rev` when a `resolver` (a repository manager) is given.
    `providers` backs `inventory.*`/`config.*`/`runtime.*`/`odc.*` and the global variable layers;
    `jit` generates `dpl.*` sub-workflows. Expansion has no side effect beyond what the providers do.
    """
    providers = providers or Providers()
    jit = jit or JitRegistry(CommandGenerator())
    expander = _Expander(
        repository, _split_user_vars(user_vars or {}), providers, jit, resolver, iterator_counts
    )
    repository, bare = expander.resolve(repository, name, "workflows")
    source = repository.read_workflow(bare)
    document = parse_workflow_document(source, bare)
    global_defaults, global_vars = global_layers(providers.store)
    ctx = _Context(repository, source.path, (source.identifier,))
    roles = expander.expand(document, None, _Layers(global_defaults, global_vars), ctx)
    if not roles:
        raise TemplateError("every role of the workflow is disabled", file=source.path)
    raw_name = document.get("name", "")
    return Workflow(
        name=bare,
        source=source.path,
        root=roles[0],
        description=str(plain(document.get("description", ""))),
        public=isinstance(raw_name, PublicScalar),
        iterators=expander.iterators,
    )
