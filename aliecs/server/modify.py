"""ModifyEnvironment: change a deployed environment in place over the control API.

The original declares the RPC (REMOVE_ROLE, ADD_ROLE, reconfigureAll) and never implements it. Here
REMOVE_ROLE excludes a role subtree and ADD_ROLE includes it again (see `Environment.exclude`,
`Environment.include`); the aliecs extensions carry new variable values (`Environment.set_vars`)
and SCALE_ROLE (`Environment.scale`). Operations run in order; the first that fails stops the
request, and it and those after it come back in `failedOperations` with the reason in `error`, so
a client knows exactly what was applied. An unknown environment or a malformed request is a
gRPC error instead.
"""

from __future__ import annotations

from aliecs.api import Core, Environment
from aliecs.errors import AliecsError, RestartNeededError
from aliecs.events import RequestUser
from aliecs.generated import o2control as pb
from aliecs.server import convert
from aliecs.server.errors import invalid

Optype = pb.EnvironmentOperationOptype

#: Operations in one request (each is a full in-place change of the environment).
MAX_OPERATIONS = 64


async def modify_environment(core: Core, request: pb.ModifyEnvironmentRequest) -> pb.ModifyEnvironmentReply:
    if not request.id:
        raise invalid("id is empty: name the environment to modify (`coconut env list`)")
    if len(request.operations) > MAX_OPERATIONS:
        raise invalid(f"{len(request.operations)} operations in one request; at most {MAX_OPERATIONS}")
    for operation in request.operations:
        _check(operation)
    env = core.environment(request.id)
    user = convert.request_user(request.request_user)
    reply = pb.ModifyEnvironmentReply(id=env.id)
    operations = list(request.operations)
    for index, operation in enumerate(operations):
        try:
            await _apply(env, operation, request.allow_running, user)
        except AliecsError as exc:
            reply.failed_operations = operations[index:]
            reply.error = str(exc)
            break
    else:
        if request.vars or request.reconfigure_all:
            try:
                await env.set_vars(
                    dict(request.vars),
                    restart=request.restart_changed,
                    reconfigure_all=request.reconfigure_all,
                    wait=True,
                    user=user,
                )
            except RestartNeededError as exc:
                reply.restart_needed = exc.tasks
                reply.error = str(exc)
            except AliecsError as exc:
                reply.error = str(exc)
    reply.state = env.state
    return reply


def _check(operation: pb.EnvironmentOperation) -> None:
    try:
        kind = Optype(operation.type)
    except ValueError:
        raise invalid(
            f"unknown operation type {int(operation.type)}; use REMOVE_ROLE, ADD_ROLE or SCALE_ROLE"
        ) from None
    if kind == Optype.NOOP:
        return
    if not operation.role_name.strip():
        raise invalid(f"operation {kind.name}: roleName is empty: name a role path, e.g. `copypush.sink1`")
    if kind == Optype.SCALE_ROLE and operation.count < 0:
        raise invalid(
            f"operation SCALE_ROLE of {operation.role_name[:100]}: count {operation.count} is negative"
        )


async def _apply(
    env: Environment, operation: pb.EnvironmentOperation, allow_running: bool, user: RequestUser | None
) -> None:
    kind = Optype(operation.type)
    if kind == Optype.REMOVE_ROLE:
        await env.exclude(operation.role_name, allow_running=allow_running, wait=True, user=user)
    elif kind == Optype.ADD_ROLE:
        await env.include(operation.role_name, allow_running=allow_running, wait=True, user=user)
    elif kind == Optype.SCALE_ROLE:
        await env.scale(operation.role_name, operation.count, wait=True, user=user)
