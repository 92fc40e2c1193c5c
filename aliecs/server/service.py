"""The `o2control.Control` gRPC service over an `aliecs.api.Core`, and the server that hosts it.

Handlers are thin: validate the request, call the Python API, convert the answer. Errors become gRPC
statuses in one place (`errors.mapped_errors`). Long operations run on the caller's handler task; if
the client gives up, a transition still completes in its environment actor (the next request sees
the result), and an environment still being created is torn down, so nothing is left half-made.
CREATE and DESTROY, which happen outside the environment state machine, are published here as
environment events, as the original's environment manager does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from grpclib.const import Handler
from grpclib.server import Stream

from actors.manager import new_environment_id
from aliecs.api import Core, Environment
from aliecs.environment import fsm as states
from aliecs.environment.aggregate import ACTIVE
from aliecs.events import (
    DONE_ERROR,
    DONE_OK,
    ONGOING,
    STARTED,
    EnvironmentEvent,
    RequestUser,
    SubscriberOverflow,
    Subscription,
    WorkflowTemplateRef,
)
from aliecs.generated import events as events_pb
from aliecs.generated import o2control as pb
from aliecs.grpcserver import GrpcServer
from aliecs.grpcservice import routes
from aliecs.server import convert, modify
from aliecs.server.audit import AUDIT_FILE, AuditLog
from aliecs.server.auth import check_listen, require_token
from aliecs.server.errors import (
    UnknownTaskError,
    invalid,
    mapped_errors,
    unimplemented,
)
from aliecs.server.events import to_proto
from aliecs.server.limits import check_request
from aliecs.server.repos import RepositoryService
from aliecs.server.rolepath import PatternError, compile_glob
from aliecs.server.sinks import EventSink
from aliecs.server.streams import DESTROY, AutoSubscription, Streams
from aliecs.wire import RequestCodec, recv_request

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 32102
CREATE = "CREATE"
CANNOT_CREATE = "cannot create new environment"  # the original's message, which GUIs wait for

Optype = pb.ControlEnvironmentRequestOptype
# The transition types of the control API are the environment events, by name (RECOVER and EXIT are
# aliecs extensions, see o2control.proto).
_EVENTS = {Optype.from_string(event): event for event in states.EVENTS}


def _version() -> str:
    try:
        return version("aliecs")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "0.0.0"


AUTO = "AUTO"  # the environment events of an auto cycle's own steps (waiting, stopped)


def _waiting_message(env: Environment) -> str:
    """What an auto cycle waits for once the run is going: said to the operator, not guessed."""
    tasks = [task for task in env.tasks if task.status == ACTIVE]
    return (
        f"auto: run {env.run_number} is going; it ends when all {len(tasks)} task(s) have reported "
        "END_OF_STREAM (basic tasks: exited), then the environment is torn down. "
        "A subscriber that leaves stops the cycle."
    )


def workflow_name(template: str) -> str:
    """`[repo/workflows/]name[@revision]` -> name (what a pending environment shows as its root)."""
    name = template.strip().split("@", 1)[0]
    if "/workflows/" in name:
        name = name.rsplit("/workflows/", 1)[1]
    elif name.startswith("workflows/"):
        name = name[len("workflows/") :]
    return name.removesuffix(".yaml")


async def read_request(stream: Stream[Any, Any]) -> Any:
    """The request of a call: bounded in size, strictly decoded, every field within its limit."""
    request = await recv_request(stream)
    if request is None:
        raise invalid("the call carried no request message")
    check_request(request)
    return request


class ControlService(RepositoryService, pb.ControlBase):
    """The RPC handlers: the methods of the generated ``ControlBase``, the repository ones from
    `RepositoryService`. `core` must be started; the service never stops it."""

    def __init__(self, core: Core, instance_name: str = "aliecs", audit: AuditLog | None = None) -> None:
        super().__init__(core)
        self.audit = audit
        self.instance_name = instance_name
        self.streams = Streams(core.events, core.has_environment)
        # Where the configuration lives: the state directory (repositories, run numbers).
        self.configuration_endpoint = f"file://{Path(core.state_dir).resolve()}"
        self.auto_tasks: set[asyncio.Task[None]] = set()

    # -- plumbing ---------------------------------------------------------------------------------

    def __mapping__(self) -> dict[str, Handler]:
        """The generated ``ControlBase`` mapping: each request read by `read_request`, errors mapped
        to statuses (`mapped_errors`), and Subscribe a handler of the call (see `_subscribe`)."""
        return routes(
            super().__mapping__(),
            reader=read_request,
            guard=mapped_errors,
            calls={"Subscribe": self._subscribe},
        )

    def _announce(
        self,
        env_id: str,
        state: str,
        transition: str,
        status: str,
        message: str = "",
        error: str = "",
        *,
        user: RequestUser | None = None,
        template: WorkflowTemplateRef | None = None,
        variables: dict[str, str] | None = None,
    ) -> None:
        """Publish the manager-level steps (CREATE, DESTROY) that happen outside the environment FSM."""
        self.core.events.publish(
            EnvironmentEvent(
                env_id,
                state,
                transition=transition,
                transition_status=status,
                message=message,
                error=error,
                last_request_user=user,
                workflow_template=template,
                vars=variables or {},
            )
        )

    # -- framework --------------------------------------------------------------------------------

    async def get_framework_info(self, request: pb.GetFrameworkInfoRequest) -> pb.GetFrameworkInfoReply:
        text = _version()
        parts = [int(p) if p.isdigit() else 0 for p in text.split(".")[:3]] + [0, 0, 0]
        return pb.GetFrameworkInfoReply(
            framework_id=str(self.core.state_dir),
            environments_count=len(await self.core.environments()),
            tasks_count=len(self.core.tasks()),
            state=self._state(),
            hosts_count=len(self.core.nodes),
            instance_name=self.instance_name,
            version=pb.Version(
                major=parts[0],
                minor=parts[1],
                patch=parts[2],
                build=f"python{sys.version_info.major}.{sys.version_info.minor}",
                product_name="aliecs",
                version_str=text,
            ),
            configuration_endpoint=self.configuration_endpoint,
            detectors_in_instance=self.core.detectors.all(),
            active_detectors=self.core.detectors.active(),
            available_detectors=self.core.detectors.available(),
            timestamp=convert.now_ms(),
        )

    def _state(self) -> str:
        """CONNECTED, or DEGRADED with the reason when the audit log cannot be written."""
        problem = self.audit.health() if self.audit is not None else ""
        return f"DEGRADED: {problem}" if problem else "CONNECTED"

    async def get_active_detectors(self, request: pb.Empty) -> pb.GetActiveDetectorsReply:
        return pb.GetActiveDetectorsReply(detectors=self.core.detectors.active(), timestamp=convert.now_ms())

    async def get_available_detectors(self, request: pb.Empty) -> pb.GetAvailableDetectorsReply:
        detectors = self.core.detectors.available()
        return pb.GetAvailableDetectorsReply(detectors=detectors, timestamp=convert.now_ms())

    async def get_integrated_services(self, request: pb.Empty) -> pb.ListIntegratedServicesReply:
        """The loaded plugins with their endpoint and connection state; `data` is the plugin's own
        JSON (for a service that cannot be reached, the reason)."""
        services = {
            info.name: pb.IntegratedServiceInfo(
                name=info.pretty_name,
                enabled=True,
                endpoint=info.endpoint,
                connection_state=info.connection_state,
                data=info.data,
            )
            for info in self.core.integrations.services()
        }
        return pb.ListIntegratedServicesReply(services=services, timestamp=convert.now_ms())

    async def teardown(self, request: pb.TeardownRequest) -> pb.TeardownReply:
        raise unimplemented(
            "Teardown is reserved by the protocol and not implemented; stop the core with SIGTERM"
        )

    async def modify_environment(self, request: pb.ModifyEnvironmentRequest) -> pb.ModifyEnvironmentReply:
        return await modify.modify_environment(self.core, request)

    # -- environments -----------------------------------------------------------------------------

    async def get_environments(self, request: pb.GetEnvironmentsRequest) -> pb.GetEnvironmentsReply:
        envs = [
            convert.environment_info(env, with_tasks=request.show_task_infos)
            for env in await self.core.environments()
            if request.show_all or env.public
        ]
        envs.sort(key=lambda info: info.created_when)
        return pb.GetEnvironmentsReply(
            framework_id=str(self.core.state_dir), environments=envs, timestamp=convert.now_ms()
        )

    async def get_environment(self, request: pb.GetEnvironmentRequest) -> pb.GetEnvironmentReply:
        env = self.core.environment(request.id)
        reply = pb.GetEnvironmentReply(
            environment=convert.environment_info(env), public=env.public, timestamp=convert.now_ms()
        )
        if request.show_workflow_tree:
            reply.workflow = convert.role_info(env.tree(), env.template)
        return reply

    def _validate_new(self, template: str) -> str:
        """The template reference as given (`[repo/workflows/]name[@revision]`), resolved by the core."""
        if not template.strip():
            raise invalid("workflowTemplate is empty: name a workflow, e.g. `coconut env create -w copypush`")
        return template.strip()

    async def _create(
        self,
        env_id: str,
        workflow: str,
        user_vars: Mapping[str, str],
        public: bool = True,
        user: RequestUser | None = None,
    ) -> Environment:
        """DEPLOY then CONFIGURE; on failure nothing is left and the error is raised.

        CREATE STARTED/DONE_OK bracket the whole request, so a client of NewEnvironmentAsync knows
        from the events when the environment is ready for its next command. As in the original,
        `last_request_user` (JSON) joins the user variables and the CREATE events carry the root
        variables.
        """
        variables = {**user_vars, "last_request_user": convert.user_json(user)}
        template = WorkflowTemplateRef(name=workflow_name(workflow), path=workflow, public=public)
        self._announce(
            env_id, "PENDING", CREATE, STARTED, message="creating environment", user=user, template=template
        )
        try:
            env = await self.core.new_environment(
                workflow, variables, env_id=env_id, public=public, user=user
            )
        except Exception as exc:
            self._announce(
                env_id,
                "ERROR",
                CREATE,
                DONE_ERROR,
                message=CANNOT_CREATE,
                error=str(exc),
                user=user,
                template=template,
            )
            raise
        try:
            await env.transition(states.CONFIGURE)
        except Exception as exc:
            self._announce(env_id, env.state, CREATE, DONE_ERROR, message=CANNOT_CREATE, error=str(exc))
            await self._destroy(env)
            raise
        self._announce(
            env_id,
            env.state,
            CREATE,
            DONE_OK,
            message="environment deployed and configured",
            variables=convert.environment_vars(env),
        )
        return env

    async def _destroy(
        self, env: Environment, *, wait: bool = False, user: RequestUser | None = None
    ) -> list[pb.ShortTaskInfo]:
        tasks = [convert.short_task(task) for task in env.tasks]
        if wait:  # a transition under way finishes first, as behind the original's mutex
            await self.core.wait_idle(env.id)
        who, template = user or env.last_request_user, env.workflow_template
        self._announce(
            env.id, env.state, DESTROY, STARTED, "destroying environment", user=who, template=template
        )
        try:
            await env.destroy(allow_running=True, wait=wait, user=user)
        except Exception as exc:
            self._announce(
                env.id, env.state, DESTROY, DONE_ERROR, error=str(exc), user=who, template=template
            )
            raise
        self._announce(
            env.id, states.DONE, DESTROY, DONE_OK, "environment destroyed", user=who, template=template
        )
        return tasks

    async def new_environment(self, request: pb.NewEnvironmentRequest) -> pb.NewEnvironmentReply:
        workflow = self._validate_new(request.workflow_template)
        user = convert.request_user(request.request_user)
        env = await self._create(new_environment_id(), workflow, request.vars, request.public, user)
        if request.auto_transition:
            self._background(self._run_to_end(env, "autoTransition"))
        return pb.NewEnvironmentReply(
            environment=convert.environment_info(env), public=env.public, timestamp=convert.now_ms()
        )

    async def new_environment_async(self, request: pb.NewEnvironmentRequest) -> pb.NewEnvironmentReply:
        workflow = self._validate_new(request.workflow_template)
        env_id = new_environment_id()
        self._background(self._create_in_background(env_id, workflow, dict(request.vars), request))
        return pb.NewEnvironmentReply(
            environment=convert.pending_environment(env_id, workflow_name(workflow), dict(request.vars)),
            public=request.public,
            timestamp=convert.now_ms(),
        )

    async def _create_in_background(
        self, env_id: str, workflow: str, user_vars: dict[str, str], request: pb.NewEnvironmentRequest
    ) -> None:
        """The original's asynchronous creation ends with one event without a transition: state
        ERROR and message "cannot create new environment" (which GUIs wait for) on failure,
        "created new environment" on success."""
        user = convert.request_user(request.request_user)
        template = WorkflowTemplateRef(name=workflow_name(workflow), path=workflow, public=request.public)
        try:
            env = await self._create(env_id, workflow, user_vars, request.public, user)
        except Exception as exc:
            log.warning("environment %s: asynchronous creation failed: %s", env_id, exc)
            self._announce(
                env_id,
                "ERROR",
                "",
                "",
                message=CANNOT_CREATE,
                error=str(exc),
                user=user,
                template=template,
            )
            return
        self._announce(env_id, env.state, "", "", message="created new environment")
        if request.auto_transition:
            await self._run_to_end(env, "autoTransition")

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.auto_tasks.add(task)
        task.add_done_callback(self.auto_tasks.discard)

    async def new_auto_environment(self, request: pb.NewAutoEnvironmentRequest) -> pb.NewAutoEnvironmentReply:
        if not request.id.strip():
            raise invalid(
                "id is empty: choose a subscription id and pass it to Subscribe to follow the cycle"
            )
        workflow = self._validate_new(request.workflow_template)
        env_id = new_environment_id()
        try:
            auto = self.streams.register_auto(request.id, env_id)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        user = convert.request_user(request.request_user)
        self._background(self._auto_cycle(request.id, env_id, workflow, dict(request.vars), auto, user))
        return pb.NewAutoEnvironmentReply(timestamp=convert.now_ms())

    async def _auto_cycle(
        self,
        subscription_id: str,
        env_id: str,
        workflow: str,
        user_vars: dict[str, str],
        auto: AutoSubscription,
        user: RequestUser | None,
    ) -> None:
        """DEPLOY, CONFIGURE, then one run to its end (see `_run_to_end`), stopped early if the
        client that subscribed to the cycle goes away."""
        try:
            env = await self._create(env_id, workflow, user_vars, True, user)
        except Exception as exc:
            log.warning("auto environment %s (subscription %s) failed: %s", env_id, subscription_id, exc)
            self._announce(env_id, states.DONE, DESTROY, DONE_ERROR, error=str(exc))
        else:
            await self._run_to_end(env, f"auto environment (subscription {subscription_id})", auto.abandoned)
        finally:
            self.streams.release_auto(subscription_id, auto)

    async def _run_to_end(self, env: Environment, why: str, abandoned: asyncio.Event | None = None) -> None:
        """START_ACTIVITY, wait for the run to end by itself (END_OF_STREAM of every task, or an
        error), then tear down, as the original's auto-transitioner does. If the client that asked
        leaves (`abandoned`), the cycle stops there (STOP, then teardown) and says so in an event
        rather than running on unattended. Stops quietly if the environment is destroyed from
        outside meanwhile."""
        abandoned = abandoned or asyncio.Event()
        try:
            if not abandoned.is_set():
                await env.transition(states.START_ACTIVITY, wait=True)
                self._announce(env.id, env.state, AUTO, ONGOING, message=_waiting_message(env))
                await self._run_ends_or_client_leaves(env, abandoned)
            if abandoned.is_set():
                log.info("environment %s: the client of the %s left; stopping the cycle", env.id, why)
                self._announce(
                    env.id, env.state, AUTO, DONE_ERROR, error="the client left: auto sequence stopped"
                )
            if self.core.has_environment(env.id):
                await self._destroy(env, wait=True)
        except Exception as exc:
            log.warning("environment %s: %s failed: %s", env.id, why, exc)
            if self.core.has_environment(env.id):
                with contextlib.suppress(Exception):
                    await self._destroy(env, wait=True)

    async def _run_ends_or_client_leaves(self, env: Environment, abandoned: asyncio.Event) -> None:
        """Wait while `env` is RUNNING (its tasks end the run), or until `abandoned` is set."""
        watch: Subscription = self.core.events.subscribe()
        gone = asyncio.ensure_future(abandoned.wait())
        try:
            while env.state == states.RUNNING and self.core.has_environment(env.id) and not gone.done():
                event = asyncio.ensure_future(watch.next())
                await asyncio.wait({gone, event}, return_when=asyncio.FIRST_COMPLETED)
                if not event.done():
                    event.cancel()
                elif (error := event.exception()) is not None:
                    if not isinstance(error, SubscriberOverflow):
                        return  # the event bus is closing: the server is shutting down
                    watch.close()
                    watch = self.core.events.subscribe()
        finally:
            gone.cancel()
            watch.close()

    async def control_environment(self, request: pb.ControlEnvironmentRequest) -> pb.ControlEnvironmentReply:
        try:
            optype = Optype(request.type)
        except ValueError:
            raise invalid(f"unknown transition type {int(request.type)}") from None
        event = _EVENTS.get(optype)
        if event is None:
            choices = ", ".join(_EVENTS.values())
            raise invalid(
                f"transition type {getattr(optype, 'name', optype)} is not a transition; use one of {choices}"
            )
        if not request.id:
            raise invalid("id is empty: name the environment to control")
        env = self.core.environment(request.id)
        user = convert.request_user(request.request_user)
        # Waits for a transition under way (bounded by the request's deadline, which grpclib enforces).
        result = await env.transition(event, wait=True, user=user)
        duration_ms = int(result.duration_s * 1000)
        return pb.ControlEnvironmentReply(
            id=env.id,
            state=env.state,
            current_run_number=env.run_number,
            start_of_transition=result.started_ms,
            end_of_transition=result.started_ms + duration_ms,
            transition_duration=duration_ms,
            timestamp=convert.now_ms(),
        )

    async def destroy_environment(self, request: pb.DestroyEnvironmentRequest) -> pb.DestroyEnvironmentReply:
        """As in the original, a RUNNING environment is destroyed with or without
        `allowInRunningState` (the original then forces its teardown; aliecs stops the run first,
        so end-of-run hooks and run events are not lost)."""
        if request.keep_tasks:
            raise invalid(
                "keepTasks is not supported: aliecs has no pool of idle tasks to keep them in; "
                "destroy without --keep-tasks"
            )
        env = self.core.environment(request.id)
        if env.state == states.RUNNING and not request.allow_in_running_state:
            log.warning(
                "environment %s: destroyed while RUNNING without allowInRunningState, stopping run %s first",
                env.id,
                env.run_number,
            )
        killed = await self._destroy(env, wait=True, user=convert.request_user(request.request_user))
        return pb.DestroyEnvironmentReply(
            cleanup_tasks_reply=pb.CleanupTasksReply(killed_tasks=killed, timestamp=convert.now_ms()),
            timestamp=convert.now_ms(),
        )

    # -- tasks and roles --------------------------------------------------------------------------

    async def get_tasks(self, request: pb.GetTasksRequest) -> pb.GetTasksReply:
        return pb.GetTasksReply(
            tasks=[convert.short_task(task) for task in self.core.tasks()], timestamp=convert.now_ms()
        )

    async def get_task(self, request: pb.GetTaskRequest) -> pb.GetTaskReply:
        for env in await self.core.environments():
            for task in env.tasks:
                if task.id == request.task_id:
                    return pb.GetTaskReply(task=convert.task_info(task, env), timestamp=convert.now_ms())
        raise UnknownTaskError(f"no task with id {request.task_id!r}")

    async def get_task_log(self, request: pb.GetTaskLogRequest) -> pb.GetTaskLogReply:
        """aliecs extension: a bounded chunk of a task's output file (`coconut task log [-f]`)."""
        task, env_id = self.core.task(request.task_id)
        chunk = await self.core.task_log(request.task_id, request.offset, request.max_bytes)
        return pb.GetTaskLogReply(
            task_id=task.id,
            path=chunk.path,
            data=chunk.data,
            next_offset=chunk.next_offset,
            task_active=task.status == ACTIVE,
            environment_id=env_id,
        )

    async def cleanup_tasks(self, request: pb.CleanupTasksRequest) -> pb.CleanupTasksReply:
        """Kill idle tasks. Every aliecs task belongs to an environment (none is idle), so nothing is
        killed: the requested (or all) tasks are reported as still running; destroy their
        environment to stop them."""
        tasks = self.core.tasks()
        if request.task_ids:
            wanted = set(request.task_ids)
            unknown = wanted - {task.id for task in tasks}
            if unknown:
                raise UnknownTaskError(f"no task with id {', '.join(sorted(unknown))}")
            tasks = [task for task in tasks if task.id in wanted]
        return pb.CleanupTasksReply(
            killed_tasks=[],
            running_tasks=[convert.short_task(task) for task in tasks],
            timestamp=convert.now_ms(),
        )

    async def get_roles(self, request: pb.GetRolesRequest) -> pb.GetRolesReply:
        env = self.core.environment(request.env_id)
        try:
            pattern = compile_glob(request.path_spec or "*")
        except PatternError as exc:
            raise invalid(str(exc)) from None
        tree = env.tree()
        roles = [convert.role_info(node, env.template) for node in tree.walk() if pattern.match(node.path)]
        return pb.GetRolesReply(roles=roles, timestamp=convert.now_ms())

    # -- events -----------------------------------------------------------------------------------

    async def _subscribe(self, stream: Stream[pb.SubscribeRequest, events_pb.Event]) -> None:
        """Subscribe, as a handler of the call: the bus subscription ends when the call does (the
        generated wrapper would leave a generator suspended until the garbage collector finalises
        it, and an auto environment's cycle stops when its subscriber leaves)."""
        request = await read_request(stream)
        async with contextlib.aclosing(self.streams.stream(request.id)) as events:
            async for event in events:
                await stream.send_message(to_proto(event))

    async def close(self) -> None:
        """End event streams and stop background environment cycles."""
        self.streams.close()
        for task in list(self.auto_tasks):
            task.cancel()
        await asyncio.gather(*self.auto_tasks, return_exceptions=True)


class ControlServer:
    """A started `ControlService` on a grpclib server, plus the sinks of the core's events: the audit
    log, then any other `sinks` given (e.g. Kafka, see `aliecs.server.sinks`)."""

    def __init__(
        self,
        core: Core,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        token: str | None = None,
        sinks: Sequence[EventSink] = (),
    ) -> None:
        check_listen(host, token)
        self.core = core
        self.host = host
        self.requested_port = port
        self.token = token
        self.audit = AuditLog(core.events, Path(core.state_dir) / AUDIT_FILE)
        self.sinks: list[EventSink] = [self.audit, *sinks]
        self.service = ControlService(core, audit=self.audit)
        self.server = GrpcServer([self.service], codec=RequestCodec())
        if token:
            require_token(self.server, token)

    @property
    def port(self) -> int:
        bound = self.server.port
        return self.requested_port if bound is None else bound

    async def start(self) -> None:
        await self.audit.start()
        if (
            self.core.start_event is not None
        ):  # published before this log existed, as the original's first event
            self.audit.record(self.core.start_event)
        for sink in self.sinks[1:]:
            await sink.start()
        await self.server.start(self.host, self.requested_port)

    async def close(self) -> None:
        await self.service.close()
        self.server.close()
        await self.server.wait_closed()
        await self.stop_sinks()

    async def stop_sinks(self) -> None:
        """Deliver what the sinks hold and close them (the audit log last, it is the record)."""
        for sink in reversed(self.sinks):
            await sink.stop()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
