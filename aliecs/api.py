"""The Python API: embed a whole control system in a program or a test harness.

async with aliecs.Core.embedded(state_dir=..., nodes=...) as core:
    env = await core.new_environment("copypush", vars={"k": "v"})   # returns in DEPLOYED
    # or "copypush@v2", "github.com/org/repo/workflows/copypush@v2"; repositories: core.repos
    await env.transition("CONFIGURE")
    env.id, env.state, env.run_number, env.tasks, env.tree()
    await env.destroy()                                              # tasks gone when it returns
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

from actors.core import CoreActor
from actors.manager import new_environment_id
from aliecs.cluster.inventory import NodeSpec, default_nodes, load_inventory
from aliecs.environment.autostop import TIMER_USER, AutoStop
from aliecs.environment.detectors import DETECTORS, HOSTS, DetectorRegistry
from aliecs.environment.fsm import normalize_event
from aliecs.environment.runnumber import RunNumberStore
from aliecs.errors import AliecsError, EnvironmentBusyError, UnknownEnvironmentError
from aliecs.events import (
    CoreStartEvent,
    EnvironmentEvent,
    Event,
    EventBus,
    RequestUser,
    RunEvent,
    WorkflowTemplateRef,
)
from aliecs.integration import Plugin, builtin_plugins
from aliecs.model import EnvironmentRecord, RoleTree, TaskCommand, TaskInfo, TransitionResult
from aliecs.workflow.repos import RepoManager
from aliecs.workflow.repository import DirectoryRepository, TemplateRepository
from aliecs.workflow.template import Workflow, load_workflow


def default_state_dir() -> Path:
    configured = os.environ.get("ALIECS_STATE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "aliecs"


def workflow_template_ref(record: EnvironmentRecord) -> WorkflowTemplateRef:
    template = record.template
    return WorkflowTemplateRef(
        name=template.root.name if template is not None else record.workflow,
        description=template.description if template is not None else "",
        path=record.requested_workflow or record.workflow,
        public=record.public,
    )


class Environment:
    """A handle on one environment. Reading attributes is free (no message is sent)."""

    def __init__(self, core: Core, record: EnvironmentRecord, ref: Any) -> None:
        self._core = core
        self._record = record
        self._ref = ref

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def workflow(self) -> str:
        return self._record.workflow

    @property
    def state(self) -> str:
        return self._record.state

    @property
    def run_number(self) -> int:
        return self._record.run_number

    @property
    def last_run_number(self) -> int:
        return self._record.last_run_number

    @property
    def current_transition(self) -> str:
        return self._record.current_transition

    @property
    def error(self) -> str:
        return self._record.error

    @property
    def tasks(self) -> list[TaskInfo]:
        return [record.info() for record in self._record.tasks.values()]

    @property
    def history(self) -> list[TransitionResult]:
        return list(self._record.history)

    @property
    def template(self) -> Workflow | None:
        """The expanded workflow (role variables, descriptions) this environment was made from."""
        return self._record.template

    def task_command(self, task_id: str) -> tuple[TaskCommand | None, dict[str, str]]:
        """How a task was started and the arguments its CONFIGURE carried (channels, properties)."""
        record = self._record.tasks[task_id]
        return record.command, dict(record.properties)

    def tree(self) -> RoleTree:
        if self._record.root is None:
            raise AliecsError(f"environment {self.id} has no role tree")
        return RoleTree.of(self._record.root)

    @property
    def public(self) -> bool:
        return self._record.public

    @property
    def created_ms(self) -> int:
        return self._record.created_ms

    @property
    def user_vars(self) -> dict[str, str]:
        """The variables given at creation (plus `environment_id`)."""
        return dict(self._record.user_vars)

    def run_variables(self) -> dict[str, str]:
        """The run's variables, as the original keeps them on the root role (only those set):
        `run_number`/`runNumber` during a run, `last_run_number`, and the SOR/EOR times in ms."""
        record = self._record
        values = {
            "run_number": record.run_number,
            "runNumber": record.run_number,
            "last_run_number": record.last_run_number,
            "run_start_time_ms": record.run_start_time_ms,
            "run_start_completion_time_ms": record.run_start_completion_time_ms,
            "run_end_time_ms": record.run_end_time_ms,
            "run_end_completion_time_ms": record.run_end_completion_time_ms,
        }
        return {key: str(value) for key, value in values.items() if value}

    @property
    def last_request_user(self) -> RequestUser | None:
        return self._record.last_request_user

    @property
    def detectors(self) -> list[str]:
        """The detectors this environment holds (from its `hosts`)."""
        return self._core.detectors.of(self.id)

    @property
    def workflow_template(self) -> WorkflowTemplateRef:
        """The workflow as environment events describe it (name, description, path, public)."""
        return workflow_template_ref(self._record)

    async def transition(
        self, event: str, *, wait: bool = False, user: RequestUser | None = None
    ) -> TransitionResult:
        """Run one transition (any FSM event name; START/STOP accepted for the activity events).

        Raises `InvalidTransitionError` (nothing changed), `EnvironmentBusyError` (another
        transition is running, unless `wait`: then it runs after that one, as the original's
        requests queue behind its per-environment mutex), or `TransitionError` (the environment
        went to ERROR). `user` is recorded as the environment's last request user.
        """
        name = normalize_event(event)
        self._check_alive(name)
        if wait:
            await self._core._exclusive.wait(self.id)
            self._check_alive(name)
        with self._core._exclusive.hold(self.id, name):
            if user is not None:
                self._record.last_request_user = user
            result: TransitionResult = await self._ref.proxy().transition(name)
        return result

    async def destroy(
        self, allow_running: bool = True, *, wait: bool = False, user: RequestUser | None = None
    ) -> None:
        """Tear down: STOP/RESET/EXIT as needed, kill what remains; no process is left when it returns.

        Destroying an environment that is already gone does nothing. `wait` and `user` as for
        `transition`."""
        if wait:
            await self._core._exclusive.wait(self.id)
        if self.id not in self._core._registry:
            return
        with self._core._exclusive.hold(self.id, "DESTROY"):
            if user is not None:
                self._record.last_request_user = user
            try:
                await self._ref.proxy().destroy(allow_running)
            finally:
                self._core.detectors.release(self.id)
                await self._core._manager.proxy().forget(self.id)

    def _check_alive(self, what: str) -> None:
        if self.id not in self._core._registry:
            raise UnknownEnvironmentError(f"environment {self.id} was destroyed; cannot {what}")

    def __repr__(self) -> str:
        return f"<Environment {self.id} {self.workflow} {self.state} run={self.run_number}>"


class _Exclusive:
    """One transition or teardown per environment at a time, and a way to wait for the running one."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[str, asyncio.Event]] = {}

    async def wait(self, env_id: str) -> None:
        """Return once nothing runs on `env_id` (the caller must take `hold` without awaiting)."""
        while (entry := self.running.get(env_id)) is not None:
            await entry[1].wait()

    @contextmanager
    def hold(self, env_id: str, what: str) -> Iterator[None]:
        entry = self.running.get(env_id)
        if entry is not None:
            raise EnvironmentBusyError(
                f"environment {env_id} is busy with {entry[0]}; {what} was not started"
            )
        done = asyncio.Event()
        self.running[env_id] = (what, done)
        try:
            yield
        finally:
            del self.running[env_id]
            done.set()


class Core:
    """An embedded control system: a local cluster of simulated nodes on this machine.

    Workflows come from the configuration repositories of `core.repos` (persisted in the state
    directory; the packaged `templates/` is the default until another default is set). A
    `repository` given to the constructor pins unqualified workflow names to it, as test
    harnesses want; qualified names (`repo/workflows/name@rev`) still resolve through `core.repos`.
    """

    def __init__(
        self,
        state_dir: Path | str | None = None,
        nodes: int | list[NodeSpec] | Path | str | None = None,
        repository: TemplateRepository | None = None,
        executor_class: type | None = None,
        plugins: Mapping[str, Plugin] | None = None,
    ) -> None:
        self.executor_class = executor_class
        self.plugins = plugins
        self.events = EventBus(stamp=self._stamp)
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        if nodes is None or isinstance(nodes, int):
            self.nodes = default_nodes(nodes or 1)
        elif isinstance(nodes, (str, Path)):
            self.nodes = load_inventory(Path(nodes))
        else:
            self.nodes = list(nodes)
        self.repository: TemplateRepository | None = repository
        self._registry: dict[str, tuple[EnvironmentRecord, Any]] = {}
        self._exclusive = _Exclusive()
        self.detectors = DetectorRegistry(self.nodes)
        self._core: Any = None
        self._manager: Any = None
        self.run_numbers: RunNumberStore | None = None
        self.start_event: CoreStartEvent | None = None
        self.auto_stop: AutoStop | None = None

    @cached_property
    def repos(self) -> RepoManager:
        """The configuration repository manager (add/remove/refresh, defaults, template listing).

        Its methods do blocking git work: call them from a worker thread in async code."""
        pinned = self.repository if isinstance(self.repository, DirectoryRepository) else None
        return RepoManager(self.state_dir, packaged=pinned)

    @classmethod
    def embedded(
        cls,
        state_dir: Path | str | None = None,
        nodes: int | list[NodeSpec] | Path | str | None = None,
        repository: TemplateRepository | None = None,
        executor_class: type | None = None,
        plugins: Mapping[str, Plugin] | None = None,
    ) -> Core:
        """An embedded core. `executor_class` replaces the node executors (e.g. an in-process fake
        executor for scale runs); by default tasks are real processes. `plugins` (name -> plugin)
        are the integrations `call` roles can use; by default only the built-in `testplugin`."""
        return cls(
            state_dir=state_dir,
            nodes=nodes,
            repository=repository,
            executor_class=executor_class,
            plugins=plugins,
        )

    async def __aenter__(self) -> Core:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.run_numbers = await asyncio.to_thread(RunNumberStore, self.state_dir / "runs.sqlite")
        await asyncio.to_thread(lambda: self.repos)  # read (or create) the repository state off the loop
        extra: dict[str, Any] = {"plugins": self.plugins}
        if self.executor_class is not None:
            extra["executor_class"] = self.executor_class
        self._core = CoreActor.start(
            self.nodes, self.run_numbers, self.state_dir / "logs", self._registry, self.events, **extra
        )
        _scheduler, self._manager = await self._core.proxy().refs()
        self.auto_stop = AutoStop(self.events, self._root_variables, self._stop_run)
        self.auto_stop.start()
        self.start_event = CoreStartEvent(framework_id=str(self.state_dir))
        self.events.publish(self.start_event)

    async def stop(self) -> None:
        """Destroy every environment (orderly, concurrently), then stop the actor tree."""
        if self._core is None:
            return
        if self.auto_stop is not None:
            await self.auto_stop.close()
        await asyncio.gather(*(env.destroy() for env in self._handles()), return_exceptions=True)
        await self._core.stop()
        self._core = None

    def _root_variables(self, env_id: str) -> dict[str, str] | None:
        entry = self._registry.get(env_id)
        template = entry[0].template if entry is not None else None
        return dict(template.root.stack) if template is not None else None

    async def _stop_run(self, env_id: str, run_number: int) -> None:
        """STOP_ACTIVITY of `run_number` in the name of TIMER, unless that run is over already."""
        await self._exclusive.wait(env_id)
        entry = self._registry.get(env_id)
        if entry is None or entry[0].state != "RUNNING" or entry[0].run_number != run_number:
            return
        await Environment(self, *entry).transition("STOP_ACTIVITY", user=TIMER_USER)

    def loaded_plugins(self) -> Mapping[str, Plugin]:
        """The integrations `call` roles can use (GetIntegratedServices lists them)."""
        return self.plugins if self.plugins is not None else builtin_plugins()

    def has_environment(self, env_id: str) -> bool:
        return env_id in self._registry

    async def wait_idle(self, env_id: str) -> None:
        """Return once no transition or teardown runs on `env_id`."""
        await self._exclusive.wait(env_id)

    def _stamp(self, event: Event) -> Event:
        """Complete environment and run events with who asked for the operation under way and, for
        environment events, the workflow the environment was made from."""
        if not isinstance(event, (EnvironmentEvent, RunEvent)):
            return event
        entry = self._registry.get(event.environment_id)
        if entry is None:
            return event
        record = entry[0]
        user = event.last_request_user or record.last_request_user
        if isinstance(event, RunEvent):
            return replace(event, last_request_user=user)
        workflow = event.workflow_template or workflow_template_ref(record)
        return replace(event, last_request_user=user, workflow_template=workflow)

    def _handles(self) -> list[Environment]:
        return [Environment(self, record, ref) for record, ref in self._registry.values()]

    async def new_environment(
        self,
        workflow: str,
        vars: Mapping[str, Any] | None = None,
        env_id: str | None = None,
        *,
        public: bool = True,
        user: RequestUser | None = None,
    ) -> Environment:
        """Create an environment from `workflow` and DEPLOY it; returns when it is DEPLOYED.

        `workflow` is `name`, `name@revision` or `repo/workflows/name[@revision]`; an unknown
        repository or revision raises `RepositoryError` before anything is created.

        On failure the environment is torn down (no process left) and the error raised names it.
        `env_id` lets a caller that must answer before deployment ends (the control server's
        NewEnvironmentAsync) choose the id up front; by default a fresh one is made. `public`
        environments are listed by default; `user` is recorded as the last request user.
        """
        if self._manager is None:
            raise AliecsError("the core is not started (use `async with Core.embedded() as core`)")
        if env_id is None:
            env_id = new_environment_id()
        elif env_id in self._registry:
            raise AliecsError(f"environment id {env_id!r} is already in use")
        variables = {str(key): str(value) for key, value in (vars or {}).items()}
        variables.setdefault("environment_id", env_id)
        detectors = self.detectors.for_variables(variables)  # `hosts` given with the request
        if detectors:
            variables.setdefault(DETECTORS, json.dumps(detectors))
        workflow_tree = await asyncio.to_thread(self._load, workflow, variables)
        if HOSTS not in variables:  # or set by the workflow itself
            detectors = self.detectors.for_variables(workflow_tree.root.stack)
        self.detectors.claim(env_id, detectors)  # no await since the check: atomic
        try:
            record, ref = await self._manager.proxy().add(env_id, workflow_tree, variables)
        except BaseException:
            self.detectors.release(env_id)
            raise
        record.public = public
        record.last_request_user = user
        record.requested_workflow = workflow
        handle = Environment(self, record, ref)
        try:
            with self._exclusive.hold(env_id, "DEPLOY"):
                await ref.proxy().build()
                await ref.proxy().transition("DEPLOY")
        except BaseException:
            try:
                await ref.proxy().destroy(True)
            finally:
                self.detectors.release(env_id)
                await self._manager.proxy().forget(env_id)
            raise
        return handle

    def _load(self, workflow: str, variables: dict[str, str]) -> Workflow:
        """Resolve `workflow` (`name`, `name@rev`, `repo/workflows/name[@rev]`) and expand it.

        Blocking (reads git objects): runs in a worker thread. Each call pins its own revision,
        so environments made from different revisions of one repository coexist."""
        qualified = "@" in workflow or "/" in workflow
        if self.repository is not None and not qualified:
            repository, name = self.repository, workflow
        else:
            repository, name = self.repos.resolve(workflow)
        return load_workflow(repository, name, variables, resolver=self.repos.resolver)

    async def environments(self) -> list[Environment]:
        return self._handles()

    def tasks(self) -> list[TaskInfo]:
        """Every task of every environment (a snapshot; no message is sent)."""
        return [task.info() for record, _ref in self._registry.values() for task in record.tasks.values()]

    def environment(self, env_id: str) -> Environment:
        entry = self._registry.get(env_id)
        if entry is None:
            known = ", ".join(self._registry) or "none"
            raise UnknownEnvironmentError(f"no environment with id {env_id!r} (known: {known})")
        return Environment(self, *entry)
