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
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from actors.context import CoreContext
from actors.core import CoreActor
from actors.environment import EnvironmentActor
from actors.gc_policy import GcPolicy
from actors.local_cluster import LocalClusterActor
from actors.manager import EnvironmentManagerActor, new_environment_id
from actors.runtime import AsyncActorRef
from aliecs.cluster.executors import InProcessExecutors, LocalExecutors
from aliecs.cluster.inventory import NodeSpec, default_nodes, load_inventory
from aliecs.cluster.scheduler_interface import ORIGINAL_RETRY, answer
from aliecs.environment import subtrees
from aliecs.environment.autostop import TIMER_USER, AutoStop
from aliecs.environment.detectors import DETECTORS, HOSTS, DetectorRegistry
from aliecs.environment.fsm import normalize_event
from aliecs.environment.journal import Journal, JournalEntry
from aliecs.environment.runnumber import RunNumberStore
from aliecs.errors import (
    AliecsError,
    EnvironmentBusyError,
    ModifyError,
    UnknownEnvironmentError,
    UnknownTaskError,
)
from aliecs.events import (
    AUDIT_FILE,
    CoreStartEvent,
    EnvironmentEvent,
    Event,
    EventBus,
    RequestUser,
    RunEvent,
    WorkflowTemplateRef,
)
from aliecs.executor.link import ExecutorLink
from aliecs.executor.orders import TaskStatus
from aliecs.executor.service import DEFAULT_FAILOVER_TIMEOUT
from aliecs.integrations import Plugin, PluginHost, builtin_plugins
from aliecs.locks import Lock, LockTable
from aliecs.model import EnvironmentRecord, ModifyResult, RoleTree, TaskCommand, TaskInfo, TransitionResult
from aliecs.statedir import make_private_dir
from aliecs.tasklog import DEFAULT_CHUNK, LogChunk, read_chunk
from aliecs.workflow.repos import RepoManager
from aliecs.workflow.repository import DirectoryRepository, TemplateNotFoundError, TemplateRepository
from aliecs.workflow.template import Workflow, load_workflow

log = logging.getLogger(__name__)

# How long a core on Mesos waits for its subscription (and, after a restart, its tasks' reconciliation).
MESOS_SUBSCRIBE_TIMEOUT = 30.0

_T = TypeVar("_T")


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

    def __init__(self, core: Core, record: EnvironmentRecord, ref: AsyncActorRef[EnvironmentActor]) -> None:
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
    def run_start_ms(self) -> int:
        """When the current (or last) run's START_ACTIVITY began, ms since the epoch (0: never)."""
        return self._record.run_start_time_ms

    @property
    def controlled_by(self) -> Lock | None:
        """The operator lock on this environment (who may change it from a front end), if any."""
        return self._core.locks.holder(self.id)

    def integrated_services_data(self) -> dict[str, str]:
        """What each integrated service knows of this environment (plugin name -> JSON)."""
        return self._core.integrations.environment_data(self.id)

    @property
    def task_count(self) -> int:
        return len(self._record.tasks)

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
                await self._core.manager().proxy().forget(self.id)
                self._core.locks.forget(self.id)

    @property
    def excluded(self) -> dict[str, str]:
        """Excluded role subtrees: path -> why it stays excluded ("" when excluded on request; the
        reason when an include could not bring it to the environment's state)."""
        return dict(self._record.excluded)

    async def exclude(
        self, path: str, *, allow_running: bool = False, wait: bool = False, user: RequestUser | None = None
    ) -> list[str]:
        """Leave the role subtree at `path` (full or relative to the root) out of every transition
        and of the role aggregates; its processes keep running and the environment keeps its state
        and run. Allowed in DEPLOYED, CONFIGURED and, for subtrees without critical tasks (or with
        `allow_running`), RUNNING. Returns the subtree's task ids; raises `ModifyError`."""
        return await self._modify("EXCLUDE", wait, user, lambda actor: actor.exclude(path, allow_running))

    async def include(
        self, path: str, *, allow_running: bool = False, wait: bool = False, user: RequestUser | None = None
    ) -> list[str]:
        """Bring the excluded subtree at `path` to the environment's state (CONFIGURE, then START
        with the current run number when RUNNING) and let it rejoin. When it cannot catch up it
        stays excluded with the reason (see `excluded`) and `ModifyError` is raised."""
        return await self._modify("INCLUDE", wait, user, lambda actor: actor.include(path, allow_running))

    async def set_vars(
        self,
        values: Mapping[str, Any],
        *,
        restart: bool = False,
        reconfigure_all: bool = False,
        wait: bool = False,
        user: RequestUser | None = None,
    ) -> ModifyResult:
        """Change variables of the deployed environment: its workflow is expanded again with them,
        and only what changes is touched. When CONFIGURED, the tasks whose CONFIGURE arguments
        change get RESET and CONFIGURE with the new ones (processes kept); roles an iterator gains
        or loses (e.g. copypush's `last_sink`) are deployed and brought up, or released, as with
        `scale`. Tasks whose command line would change need `restart=True` (else
        `RestartNeededError` names them and nothing changes). `reconfigure_all` reconfigures every
        task of a CONFIGURED environment. Raises `ModifyError`, `TemplateError`."""
        _check_values(self.id, values)
        variables = {**self._record.user_vars, **{str(k): str(v) for k, v in values.items()}}
        counts = dict(self._record.iterator_counts)
        return await self._reshape("SET_VARS", variables, counts, restart, reconfigure_all, wait, user)

    async def scale(
        self,
        path: str,
        count: int,
        *,
        restart: bool = False,
        wait: bool = False,
        user: RequestUser | None = None,
    ) -> ModifyResult:
        """Make the iterator at `path` (`copypush.sink`, `sink`, or the path of one of its roles)
        generate `count` roles: the new ones are deployed and brought to the environment's state
        (also when RUNNING, with the current run number), the dropped ones released, and the tasks
        whose channels change get them at their next CONFIGURE. The count stays until scaled again
        (variables the iterator's range is made from no longer change it)."""
        template = self._record.template
        if template is None:
            raise ModifyError(f"environment {self.id} has no workflow to scale")
        key = subtrees.find_iterator(template.root, template.iterators, path, self.id)
        counts = {**self._record.iterator_counts, key: int(count)}
        variables = dict(self._record.user_vars)
        return await self._reshape("SCALE", variables, counts, restart, False, wait, user)

    async def _reshape(
        self,
        operation: str,
        variables: dict[str, str],
        counts: dict[str, int],
        restart: bool,
        reconfigure_all: bool,
        wait: bool,
        user: RequestUser | None,
    ) -> ModifyResult:
        async def run(actor: Any) -> ModifyResult:
            workflow = self._record.requested_workflow or self._record.workflow
            expanded = await asyncio.to_thread(self._core._load, workflow, variables, counts)
            result: ModifyResult = await actor.reshape(
                expanded, variables, counts, restart, reconfigure_all, operation
            )
            return result

        return await self._modify(operation, wait, user, run)

    async def _modify(
        self, what: str, wait: bool, user: RequestUser | None, call: Callable[[Any], Awaitable[_T]]
    ) -> _T:
        """Run an in-place change on the environment's actor, exclusive with its transitions."""
        self._check_alive(what)
        if wait:
            await self._core._exclusive.wait(self.id)
            self._check_alive(what)
        with self._core._exclusive.hold(self.id, what):
            if user is not None:
                self._record.last_request_user = user
            result: _T = await call(self._ref.proxy())
        return result

    def _check_alive(self, what: str) -> None:
        if self.id not in self._core._registry:
            raise UnknownEnvironmentError(f"environment {self.id} was destroyed; cannot {what}")

    def __repr__(self) -> str:
        return f"<Environment {self.id} {self.workflow} {self.state} run={self.run_number}>"


#: Bounds of one `set_vars` request (the gRPC message limit bounds them too).
MAX_VARS = 256
MAX_VAR_KEY = 256
MAX_VAR_VALUE = 64 * 1024


def _check_values(env_id: str, values: Mapping[str, Any]) -> None:
    if len(values) > MAX_VARS:
        raise ModifyError(f"environment {env_id}: {len(values)} variables at once; at most {MAX_VARS}")
    for key, value in values.items():
        if not str(key).strip() or len(str(key)) > MAX_VAR_KEY:
            raise ModifyError(
                f"environment {env_id}: variable name {str(key)[:40]!r}: 1 to {MAX_VAR_KEY} characters"
            )
        if len(str(value)) > MAX_VAR_VALUE:
            raise ModifyError(f"environment {env_id}: variable {key}: value over {MAX_VAR_VALUE} characters")


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
        executor_kind: str = "process",
        outlive_core: bool = False,
        failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT,
        mesos: str | None = None,
    ) -> None:
        # The Mesos master to run on (its URL); None: the local cluster of `nodes`.
        self.mesos = mesos
        self.executor_class = executor_class
        self.executor_kind = executor_kind
        self.outlive_core = outlive_core
        self.failover_timeout = failover_timeout
        # Resolved once: the actors that run `call` roles and `core.integrations` share the instances
        # (a core given none gets its own `testplugin`, see `builtin_plugins`).
        self.plugins: Mapping[str, Plugin] = plugins if plugins is not None else builtin_plugins()
        self.executors: LocalExecutors | InProcessExecutors | None = None
        # Environments are journaled when they can outlive this core (see `outlive_core`).
        self.journal: Journal | None = None
        self.events = EventBus(stamp=self._stamp)
        self.integrations = PluginHost(self.loaded_plugins(), self.events)
        self.locks = LockTable()  # which operator controls which environment (front ends enforce it)
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        if mesos is not None and nodes is None:
            self.nodes = []  # Mesos agents come with the offers
        elif nodes is None or isinstance(nodes, int):
            self.nodes = default_nodes(nodes or 1)
        elif isinstance(nodes, (str, Path)):
            self.nodes = load_inventory(Path(nodes))
        else:
            self.nodes = list(nodes)
        self.repository: TemplateRepository | None = repository
        self._registry: dict[str, tuple[EnvironmentRecord, AsyncActorRef[EnvironmentActor]]] = {}
        self._exclusive = _Exclusive()
        self.detectors = DetectorRegistry(self.nodes)
        self._core: AsyncActorRef[CoreActor] | None = None
        self._scheduler: Any = None
        self._manager: AsyncActorRef[EnvironmentManagerActor] | None = None
        self.run_numbers: RunNumberStore | None = None
        self.start_event: CoreStartEvent | None = None
        # This core's share of the process-wide gc.freeze (two cores in one process keep their own).
        self.gc_policy = GcPolicy()
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
        executor_kind: str = "process",
        outlive_core: bool = False,
        failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT,
        mesos: str | None = None,
    ) -> Core:
        """An embedded core. Each node's executor is an `aliecs-executor` process (tasks are its
        children): `executor_kind` "process" runs real task processes, "farm" fake-farm endpoints.
        With `outlive_core`, executors and tasks survive the core (until `failover_timeout` seconds
        without it) and a core started again on the same state directory re-adopts them; by default
        they die with the core, so a test harness never leaks a process. `executor_class` instead
        embeds the node executors in this process (the in-process fake executor of scale runs).
        `plugins` (name -> plugin) are the integrations `call` roles can use; by default only the
        built-in `testplugin`, an instance of this core's own (`aliecs.testing.core_testplugin`;
        `aliecs.integrations.load_plugins` makes plugins from a configuration).
        The core starts them with itself and stops them last. `mesos` (a master URL,
        `http://HOST:5050`) runs the tasks on Apache Mesos instead of the local nodes: a framework
        whose executor runs on each agent it uses."""
        return cls(
            state_dir=state_dir,
            nodes=nodes,
            repository=repository,
            executor_class=executor_class,
            plugins=plugins,
            executor_kind=executor_kind,
            outlive_core=outlive_core,
            failover_timeout=failover_timeout,
            mesos=mesos,
        )

    async def __aenter__(self) -> Core:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def manager(self) -> AsyncActorRef[EnvironmentManagerActor]:
        """The environment manager actor (the core must be started)."""
        if self._manager is None:
            raise AliecsError("the core is not started")
        return self._manager

    async def start(self) -> None:
        await asyncio.to_thread(make_private_dir, self.state_dir)
        await asyncio.to_thread(make_private_dir, self.state_dir / "logs")
        self.run_numbers = await asyncio.to_thread(
            RunNumberStore, self.state_dir / "runs.sqlite", self.state_dir / AUDIT_FILE
        )
        await asyncio.to_thread(lambda: self.repos)  # read (or create) the repository state off the loop
        if self.mesos is not None:
            await self._start_on_mesos(self.mesos)
        else:
            await self._start_local()
        self.auto_stop = AutoStop(self.events, self._root_variables, self._stop_run)
        self.auto_stop.start()
        self.start_event = CoreStartEvent(framework_id=str(self.state_dir))
        self.events.publish(self.start_event)

    def _context(self) -> CoreContext:
        """What the core's actors share (made once per start; see `actors.context`)."""
        assert self.run_numbers is not None, "the run-number store opens first"
        return CoreContext(
            run_numbers=self.run_numbers,
            log_dir=self.state_dir / "logs",
            bus=self.events,
            plugins=self.loaded_plugins(),
            journal=self.journal,
            gc=self.gc_policy,
        )

    async def _start_local(self) -> None:
        if self.executor_class is not None:
            self.executors = InProcessExecutors(self.nodes, self.executor_class)
        else:
            self.executors = LocalExecutors(
                self.nodes,
                self.state_dir,
                kind=self.executor_kind,
                outlive_core=self.outlive_core,
                failover_timeout=self.failover_timeout,
            )
        links = await self.executors.start()
        await self.integrations.start()  # never fails: a service away is reported by its plugin
        if self.outlive_core:
            self.journal = await asyncio.to_thread(Journal, self.state_dir / "journal.sqlite")
        self._core = CoreActor.start(
            self._context(), self._registry, (LocalClusterActor, (self.nodes, dict(links)))
        )
        _scheduler, self._manager = await self._core.proxy().refs()
        if self.journal is not None:
            entries = await asyncio.to_thread(self.journal.load)
            await self._restore(entries, links, self.executors.adopted)

    async def _start_on_mesos(self, master: str) -> None:
        """The core as a Mesos framework: the MesosAdapter is its scheduler; executors come and go
        with the tasks placed on agents (see actors.mesos_adapter)."""
        # Imported here: the local cluster does not need the Mesos client (aiohttp) loaded.
        from actors.mesos_adapter import MesosAdapter

        if self.outlive_core:
            self.journal = await asyncio.to_thread(Journal, self.state_dir / "journal.sqlite")
        self._core = CoreActor.start(
            self._context(),
            self._registry,
            (
                MesosAdapter,
                (
                    master,
                    self.state_dir,
                    self.failover_timeout,
                    ORIGINAL_RETRY,
                    1.0,
                    None,
                    self.executor_kind,
                ),
            ),
        )
        self._scheduler, self._manager = await self._core.proxy().refs()
        try:
            await answer(self._scheduler.proxy().wait_subscribed(MESOS_SUBSCRIBE_TIMEOUT))
        except Exception:
            await self._core.stop()
            self._core = None
            raise
        if self.journal is not None:
            entries = await asyncio.to_thread(self.journal.load)
            task_ids = [task_id for entry in entries for task_id in entry.snapshot["task_ids"]]
            adopted = await answer(self._scheduler.proxy().readopt(task_ids, MESOS_SUBSCRIBE_TIMEOUT))
            await self._restore(entries, await self._scheduler.proxy().links(), adopted)

    async def stop(self) -> None:
        """Destroy every environment (orderly, concurrently), then stop the actor tree."""
        if self._core is None:
            return
        if self.auto_stop is not None:
            await self.auto_stop.close()
        await asyncio.gather(*(env.destroy() for env in self._handles()), return_exceptions=True)
        await self._core.stop()
        self._core = None
        await self.integrations.stop()
        if self.executors is not None:
            await self.executors.stop()
            self.executors = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    async def detach(self) -> None:
        """Stop this core and leave its environments running: the executors keep every task until a
        core started on the same state directory takes them back (within the failover timeout).
        This is how to stop or upgrade the core during a run; it needs `outlive_core`."""
        if self._core is None:
            return
        if not self.outlive_core or (self.executors is None and self.mesos is None):
            raise AliecsError("detach needs a core whose executors outlive it (outlive_core=True)")
        if self.mesos is not None:
            await self._scheduler.proxy().keep_framework()  # no TEARDOWN: Mesos keeps the tasks
        await self._core.stop()
        self._core = None
        await self.integrations.stop()
        if self.executors is not None:
            await self.executors.stop(stop_executors=False)
        self.executors = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    async def _restore(
        self,
        entries: list[JournalEntry],
        links: Mapping[str, ExecutorLink],
        adopted: Mapping[str, list[TaskStatus]],
    ) -> None:
        """Take back the environments of an earlier core from the journal, with the tasks the
        executors kept running (`adopted`, per node); tasks no environment claims any more are killed."""
        assert self.journal is not None
        running = {status.task_id: status for found in adopted.values() for status in found}
        claimed: set[str] = set()
        for entry in entries:
            # Variables and iterator counts as last changed (set_vars, scale), else as created.
            variables = entry.snapshot.get("variables", entry.variables)
            counts = entry.snapshot.get("iterator_counts", {})
            try:
                workflow = await asyncio.to_thread(self._load, entry.workflow, variables, counts)
            except Exception as exc:
                log.error("environment %s cannot be restored (%s): its tasks are killed", entry.env_id, exc)
                await asyncio.to_thread(self.journal.remove, entry.env_id)
                continue
            record, ref = await self.manager().proxy().add(entry.env_id, workflow, variables)
            record.requested_workflow = entry.workflow
            record.iterator_counts = dict(counts)
            detectors = self.detectors.for_variables(entry.variables) or self.detectors.for_variables(
                workflow.root.stack
            )
            try:
                self.detectors.claim(entry.env_id, detectors)
            except AliecsError as exc:  # the inventory changed while the core was away
                log.error("environment %s: %s", entry.env_id, exc)
            await ref.proxy().restore(entry.snapshot, running)
            claimed.update(entry.snapshot["task_ids"])
        for hostname, found in adopted.items():
            orphans = [status.task_id for status in found if status.task_id not in claimed]
            if orphans:
                log.warning("node %s: killing %d task(s) no environment claims", hostname, len(orphans))
                await links[hostname].kill(orphans)

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
        return self.plugins

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
            record, ref = await self.manager().proxy().add(env_id, workflow_tree, variables)
        except BaseException:
            self.detectors.release(env_id)
            raise
        record.public = public
        record.last_request_user = user
        record.requested_workflow = workflow
        if self.journal is not None:
            await asyncio.to_thread(self.journal.create, env_id, workflow, variables)
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
                await self.manager().proxy().forget(env_id)
            raise
        return handle

    def _load(
        self, workflow: str, variables: dict[str, str], iterator_counts: Mapping[str, int] | None = None
    ) -> Workflow:
        """Resolve `workflow` (`name`, `name@rev`, `repo/workflows/name[@rev]`) and expand it.

        Blocking (reads git objects): runs in a worker thread. Each call pins its own revision,
        so environments made from different revisions of one repository coexist."""
        qualified = "@" in workflow or "/" in workflow
        if self.repository is not None and not qualified:
            repository, name = self.repository, workflow
        else:
            repository, name = self.repos.resolve(workflow)
        try:
            return load_workflow(
                repository, name, variables, resolver=self.repos.resolver, iterator_counts=iterator_counts
            )
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
