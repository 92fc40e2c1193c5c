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
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

from actors.core import CoreActor
from actors.manager import new_environment_id
from aliecs.cluster.inventory import NodeSpec, default_nodes, load_inventory
from aliecs.environment.fsm import normalize_event
from aliecs.environment.runnumber import RunNumberStore
from aliecs.errors import AliecsError, EnvironmentBusyError, UnknownEnvironmentError, UnknownTaskError
from aliecs.events import CoreStartEvent, EventBus
from aliecs.integration import Plugin
from aliecs.model import EnvironmentRecord, RoleTree, TaskInfo, TransitionResult
from aliecs.tasklog import DEFAULT_CHUNK, LogChunk, read_chunk
from aliecs.workflow.repos import RepoManager
from aliecs.workflow.repository import DirectoryRepository, TemplateNotFoundError, TemplateRepository
from aliecs.workflow.template import Workflow, load_workflow


def default_state_dir() -> Path:
    configured = os.environ.get("ALIECS_STATE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "aliecs"


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

    def tree(self) -> RoleTree:
        if self._record.root is None:
            raise AliecsError(f"environment {self.id} has no role tree")
        return RoleTree.of(self._record.root)

    async def transition(self, event: str) -> TransitionResult:
        """Run one transition (any FSM event name; START/STOP accepted for the activity events).

        Raises `InvalidTransitionError` (nothing changed), `EnvironmentBusyError` (another
        transition is running), or `TransitionError` (the environment went to ERROR).
        """
        name = normalize_event(event)
        self._check_alive(name)
        with self._core._exclusive(self.id, name):
            result: TransitionResult = await self._ref.proxy().transition(name)
        return result

    async def destroy(self, allow_running: bool = True) -> None:
        """Tear down: STOP/RESET/EXIT as needed, kill what remains; no process is left when it returns.

        Destroying an environment that is already gone does nothing."""
        if self.id not in self._core._registry:
            return
        with self._core._exclusive(self.id, "DESTROY"):
            try:
                await self._ref.proxy().destroy(allow_running)
            finally:
                await self._core._manager.proxy().forget(self.id)

    def _check_alive(self, what: str) -> None:
        if self.id not in self._core._registry:
            raise UnknownEnvironmentError(f"environment {self.id} was destroyed; cannot {what}")

    def __repr__(self) -> str:
        return f"<Environment {self.id} {self.workflow} {self.state} run={self.run_number}>"


class _Exclusive:
    def __init__(self, busy: dict[str, str], env_id: str, what: str) -> None:
        self.busy, self.env_id, self.what = busy, env_id, what

    def __enter__(self) -> None:
        running = self.busy.get(self.env_id)
        if running is not None:
            raise EnvironmentBusyError(
                f"environment {self.env_id} is busy with {running}; {self.what} was not started"
            )
        self.busy[self.env_id] = self.what

    def __exit__(self, *exc: object) -> None:
        self.busy.pop(self.env_id, None)


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
        self.events = EventBus()
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        if nodes is None or isinstance(nodes, int):
            self.nodes = default_nodes(nodes or 1)
        elif isinstance(nodes, (str, Path)):
            self.nodes = load_inventory(Path(nodes))
        else:
            self.nodes = list(nodes)
        self.repository: TemplateRepository | None = repository
        self._registry: dict[str, tuple[EnvironmentRecord, Any]] = {}
        self._busy: dict[str, str] = {}
        self._core: Any = None
        self._manager: Any = None
        self.run_numbers: RunNumberStore | None = None

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
        self.events.publish(CoreStartEvent(framework_id=str(self.state_dir)))

    async def stop(self) -> None:
        """Destroy every environment (orderly, concurrently), then stop the actor tree."""
        if self._core is None:
            return
        await asyncio.gather(*(env.destroy() for env in self._handles()), return_exceptions=True)
        await self._core.stop()
        self._core = None

    def _exclusive(self, env_id: str, what: str) -> _Exclusive:
        return _Exclusive(self._busy, env_id, what)

    def _handles(self) -> list[Environment]:
        return [Environment(self, record, ref) for record, ref in self._registry.values()]

    async def new_environment(
        self, workflow: str, vars: Mapping[str, Any] | None = None, env_id: str | None = None
    ) -> Environment:
        """Create an environment from `workflow` and DEPLOY it; returns when it is DEPLOYED.

        `workflow` is `name`, `name@revision` or `repo/workflows/name[@revision]`; an unknown
        repository or revision raises `RepositoryError` before anything is created.

        On failure the environment is torn down (no process left) and the error raised names it.
        `env_id` lets a caller that must answer before deployment ends (the control server's
        NewEnvironmentAsync) choose the id up front; by default a fresh one is made.
        """
        if self._manager is None:
            raise AliecsError("the core is not started (use `async with Core.embedded() as core`)")
        if env_id is None:
            env_id = new_environment_id()
        elif env_id in self._registry:
            raise AliecsError(f"environment id {env_id!r} is already in use")
        variables = {str(key): str(value) for key, value in (vars or {}).items()}
        variables.setdefault("environment_id", env_id)
        workflow_tree = await asyncio.to_thread(self._load, workflow, variables)
        record, ref = await self._manager.proxy().add(env_id, workflow_tree, variables)
        handle = Environment(self, record, ref)
        try:
            with self._exclusive(env_id, "DEPLOY"):
                await ref.proxy().build()
                await ref.proxy().transition("DEPLOY")
        except BaseException:
            try:
                await ref.proxy().destroy(True)
            finally:
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
        try:
            return load_workflow(repository, name, variables, resolver=self.repos.resolver)
        except TemplateNotFoundError as exc:
            elsewhere = [] if "/" in workflow else self.repos.elsewhere(name.partition("@")[0])
            if not elsewhere:
                raise
            raise TemplateNotFoundError(f"{exc}; it exists as {' and '.join(elsewhere)}") from None

    async def environments(self) -> list[Environment]:
        return self._handles()

    def tasks(self) -> list[TaskInfo]:
        """Every task of every environment (a snapshot; no message is sent)."""
        return [task.info() for record, _ref in self._registry.values() for task in record.tasks.values()]

    def task(self, task_id: str) -> tuple[TaskInfo, str]:
        """The task with this id and the id of its environment (a snapshot)."""
        for record, _ref in self._registry.values():
            task = record.tasks.get(task_id)
            if task is not None:
                return task.info(), record.id
        raise UnknownTaskError(f"no task with id {task_id!r}")

    async def task_log(self, task_id: str, offset: int = 0, max_bytes: int = DEFAULT_CHUNK) -> LogChunk:
        """A chunk of the task's output (stdout and stderr) from byte `offset` (negative: from the
        end); read on with `offset=chunk.next_offset`. `TaskInfo.error` says why a task failed; the
        log says what it printed on the way."""
        task, _env_id = self.task(task_id)
        if not task.log_path:
            return LogChunk("", 0, "", 0, 0)
        return await asyncio.to_thread(read_chunk, task.log_path, offset, max_bytes)

    def environment(self, env_id: str) -> Environment:
        entry = self._registry.get(env_id)
        if entry is None:
            known = ", ".join(self._registry) or "none"
            raise UnknownEnvironmentError(f"no environment with id {env_id!r} (known: {known})")
        return Environment(self, *entry)
