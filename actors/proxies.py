"""What each actor may be sent: one class per actor, typing `ref.proxy()` for mypy.

An actor names its proxy class as its type parameter (`class TaskActor(AsyncioActor["TaskProxy"])`),
and `AsyncActorRef[TaskActor].proxy()` is then a `TaskProxy`: a message the actor does not take, or
wrong arguments, is a type error where it is sent, instead of an `AttributeError` in the actor's
task at run time. Each entry is taken from the actor's own method (`proxied`), so signatures are
never copied; a new message is one line here. These classes are types: never instantiated.
"""

from __future__ import annotations

from actors.core import CoreActor
from actors.environment import EnvironmentActor
from actors.executor import ExecutorActor, ProcessActor
from actors.local_cluster import LocalClusterActor
from actors.manager import EnvironmentManagerActor
from actors.role import RoleActor
from actors.runtime import AsyncioFuture, proxied
from actors.task import TaskActor

__all__ = [
    "CoreProxy",
    "EnvironmentProxy",
    "ExecutorProxy",
    "ManagerProxy",
    "ProcessProxy",
    "RoleProxy",
    "SchedulerProxy",
    "TaskProxy",
]


class TaskProxy:
    """A task actor, as the environment drives it through a transition."""

    mark_undeployable = proxied(TaskActor.mark_undeployable)
    placed = proxied(TaskActor.placed)
    deployed = proxied(TaskActor.deployed)
    transitioned = proxied(TaskActor.transitioned)
    failed = proxied(TaskActor.failed)
    killed = proxied(TaskActor.killed)
    adopted = proxied(TaskActor.adopted)
    vanished = proxied(TaskActor.vanished)


class RoleProxy:
    """A role actor: builds its subtree, reports its aggregate state."""

    build = proxied(RoleActor.build)
    settle = proxied(RoleActor.settle)
    add_child = proxied(RoleActor.add_child)
    remove_child = proxied(RoleActor.remove_child)
    retarget = proxied(RoleActor.retarget)
    role_refs = proxied(RoleActor.role_refs)
    exclude_child = proxied(RoleActor.exclude_child)
    critical: AsyncioFuture[bool]


class EnvironmentProxy:
    """An environment actor, as the API drives it."""

    build = proxied(EnvironmentActor.build)
    transition = proxied(EnvironmentActor.transition)
    destroy = proxied(EnvironmentActor.destroy)
    restore = proxied(EnvironmentActor.restore)
    snapshot = proxied(EnvironmentActor.snapshot)
    drop_tasks = proxied(EnvironmentActor.drop_tasks)
    exclude = proxied(EnvironmentActor.exclude)
    include = proxied(EnvironmentActor.include)
    reshape = proxied(EnvironmentActor.reshape)


class ManagerProxy:
    """The environment manager: adds, finds and forgets environments."""

    add = proxied(EnvironmentManagerActor.add)
    lookup = proxied(EnvironmentManagerActor.lookup)
    forget = proxied(EnvironmentManagerActor.forget)


class CoreProxy:
    """The core actor: hands out the scheduler and the manager."""

    refs = proxied(CoreActor.refs)


class SchedulerProxy:
    """The placement of tasks on nodes (the local cluster)."""

    place = proxied(LocalClusterActor.place)
    adopt = proxied(LocalClusterActor.adopt)
    release = proxied(LocalClusterActor.release)
    kill = proxied(LocalClusterActor.kill)
    status = proxied(LocalClusterActor.status)
    move_control_port = proxied(LocalClusterActor.move_control_port)


class ExecutorProxy:
    """The executor of one node."""

    launch = proxied(ExecutorActor.launch)


class ProcessProxy:
    """The actor driving one task process on its executor."""

    start_process = proxied(ProcessActor.start_process)
    adopt = proxied(ProcessActor.adopt)
    current_pid = proxied(ProcessActor.current_pid)
    get_state = proxied(ProcessActor.get_state)
    transition = proxied(ProcessActor.transition)
    kill = proxied(ProcessActor.kill)
    release = proxied(ProcessActor.release)
