"""Snapshots of the core (aliecs.model, aliecs.api) as o2control protobuf messages."""

from __future__ import annotations

import time

from aliecs.api import Environment
from aliecs.generated import o2control as pb
from aliecs.locks import as_service_data
from aliecs.model import RoleTree, TaskInfo
from aliecs.workflow.template import Role, Workflow


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
        deployment_info=pb.TaskDeploymentInfo(hostname=task.host, agent_id=task.host, executor_id=task.host),
        pid=str(task.pid) if task.pid else "",
        sandbox_stdout=task.log_path,
        claimable=False,
        critical=task.critical,
    )


def environment_info(env: Environment, with_tasks: bool = True) -> pb.EnvironmentInfo:
    tasks = env.tasks
    template = env.template
    root = template.root if template is not None else None
    hosts = {task.host for task in tasks if task.host}
    return pb.EnvironmentInfo(
        id=env.id,
        created_when=env._record.created_ms,
        state=env.state,
        tasks=[short_task(task) for task in tasks] if with_tasks else [],
        root_role=root.name if root is not None else env.workflow,
        current_run_number=env.run_number,
        defaults=dict(root.defaults) if root is not None else {},
        vars=dict(root.vars) if root is not None else {},
        user_vars=dict(env._record.user_vars),
        number_of_flps=len(hosts),
        description=template.description if template is not None else "",
        number_of_hosts=len(hosts),
        number_of_tasks=len(tasks),
        current_transition=env.current_transition,
        number_of_active_tasks=sum(1 for task in tasks if task.status == "ACTIVE"),
        number_of_inactive_tasks=sum(1 for task in tasks if task.status == "INACTIVE"),
        integrated_services_data=as_service_data(env.controlled_by),
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


def task_info(task: TaskInfo, env_id: str) -> pb.TaskInfo:
    return pb.TaskInfo(short_info=short_task(task), task_path=task.role_path, env_id=env_id)
