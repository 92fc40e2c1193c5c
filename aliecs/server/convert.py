"""Snapshots of the core (aliecs.model, aliecs.api) as o2control protobuf messages."""

from __future__ import annotations

import json
import time

from aliecs.api import Environment
from aliecs.environment.aggregate import ACTIVE, INACTIVE
from aliecs.events import RequestUser
from aliecs.generated import common as common_pb
from aliecs.generated import o2control as pb
from aliecs.locks import as_service_data
from aliecs.model import RoleTree, TaskInfo
from aliecs.workflow.template import Role, Workflow

MAX_USER_NAME = 256


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def short_task(task: TaskInfo) -> pb.ShortTaskInfo:
    """Tasks always belong to an environment in aliecs (there is no pool of idle tasks), so they are
    locked and never claimable."""
    return pb.ShortTaskInfo(
        name=task.name,
        locked=True,
        task_id=task.id,
        status=task.status,
        state=task.state,
        class_name=task.class_name,
        deployment_info=pb.TaskDeploymentInfo(
            hostname=task.host, agent_id=task.host, executor_id=task.executor_id or task.host
        ),
        pid=str(task.pid) if task.pid else "",
        sandbox_stdout=task.log_path,
        claimable=False,
        critical=task.critical,
        error=task.error,
        excluded=task.excluded,
    )


def request_user(user: common_pb.User | None) -> RequestUser | None:
    """`requestUser` of a request, or None when the client sent none."""
    if user is None or not (user.name or user.id or user.external_id):
        return None
    return RequestUser(name=user.name[:MAX_USER_NAME], id=user.id or 0, external_id=user.external_id or 0)


def user_json(user: RequestUser | None) -> str:
    """The `last_request_user` variable: the user as the original stores it (Go's JSON of
    `common.User`, empty fields left out; `null` when nobody was named)."""
    if user is None:
        return "null"
    fields = {"externalId": user.external_id, "id": user.id, "name": user.name}
    return json.dumps({key: value for key, value in fields.items() if value}, separators=(",", ":"))


def environment_vars(env: Environment) -> dict[str, str]:
    """The root role's whole variable stack (what CREATE events carry)."""
    template = env.template
    stack = dict(template.root.stack) if template is not None else {}
    return {**stack, **env.user_vars, **env.run_variables()}


def environment_info(env: Environment, with_tasks: bool = True) -> pb.EnvironmentInfo:
    tasks = env.tasks
    template = env.template
    root = template.root if template is not None else None
    hosts = {task.host for task in tasks if task.host}
    return pb.EnvironmentInfo(
        id=env.id,
        created_when=env.created_ms,
        state=env.state,
        tasks=[short_task(task) for task in tasks] if with_tasks else [],
        root_role=root.name if root is not None else env.workflow,
        current_run_number=env.run_number,
        defaults=dict(root.defaults) if root is not None else {},
        vars=dict(root.vars) if root is not None else {},
        user_vars={**env.user_vars, **env.run_variables()},
        number_of_flps=len(hosts),
        included_detectors=env.detectors,
        description=template.description if template is not None else "",
        number_of_hosts=len(hosts),
        number_of_tasks=len(tasks),
        current_transition=env.current_transition,
        number_of_active_tasks=sum(1 for task in tasks if task.status == ACTIVE),
        number_of_inactive_tasks=sum(1 for task in tasks if task.status == INACTIVE),
        error=env.error,
        last_run_number=env.last_run_number,
        integrated_services_data={**env.integrated_services_data(), **as_service_data(env.controlled_by)},
    )


def pending_environment(env_id: str, workflow: str, user_vars: dict[str, str]) -> pb.EnvironmentInfo:
    """What NewEnvironmentAsync answers before the environment exists."""
    return pb.EnvironmentInfo(
        id=env_id, created_when=now_ms(), state="PENDING", root_role=workflow, user_vars=dict(user_vars)
    )


def _template_roles(workflow: Workflow | None) -> dict[str, Role]:
    return {role.path: role for role in workflow.root.walk()} if workflow is not None else {}


def role_info(node: RoleTree, workflow: Workflow | None, recursive: bool = True) -> pb.RoleInfo:
    roles = _template_roles(workflow)
    return _role_info(node, roles, recursive)


def _role_info(node: RoleTree, roles: dict[str, Role], recursive: bool) -> pb.RoleInfo:
    spec = roles.get(node.path)
    task_ids = [n.task.id for n in node.walk() if n.task is not None]
    return pb.RoleInfo(
        name=node.name,
        status=node.status,
        state=node.state,
        full_path=node.path,
        task_ids=task_ids,
        roles=[_role_info(child, roles, recursive) for child in node.children] if recursive else [],
        defaults=dict(spec.defaults) if spec else {},
        vars=dict(spec.vars) if spec else {},
        user_vars=dict(spec.user_vars) if spec else {},
        consolidated_stack=dict(spec.stack) if spec else {},
    )


def task_info(task: TaskInfo, env: Environment) -> pb.TaskInfo:
    """GetTask's answer: channels and properties as sent at CONFIGURE, and the command started."""
    command, properties = env.task_command(task.id)
    inbound, outbound = channels(properties)
    info = pb.TaskInfo(
        short_info=short_task(task),
        inbound_channels=inbound,
        outbound_channels=outbound,
        task_path=task.role_path,
        env_id=env.id,
        properties=properties,
    )
    if command is not None:
        info.command_info = pb.CommandInfo(
            env=list(command.env), shell=command.shell, value=command.value, arguments=list(command.arguments)
        )
    return info


def channels(properties: dict[str, str]) -> tuple[list[pb.ChannelInfo], list[pb.ChannelInfo]]:
    """Inbound (bound) and outbound (connected) channels from the `chans.<name>.0.*` keys."""
    inbound: list[pb.ChannelInfo] = []
    outbound: list[pb.ChannelInfo] = []
    for key, method in properties.items():
        if not (key.startswith("chans.") and key.endswith(".0.method")):
            continue
        prefix = key.removesuffix(".method")
        name = prefix.removeprefix("chans.").removesuffix(".0")
        channel = pb.ChannelInfo(
            name=name,
            type=properties.get(f"{prefix}.type", ""),
            target=properties.get(f"{prefix}.address", ""),
        )
        (inbound if method == "bind" else outbound).append(channel)
    return inbound, outbound
