"""Environments over REST: list, create, show, transition, destroy, and the operator lock.

Changing an environment needs its lock (`aliecs.locks`): the caller names its session in the
`X-Aliecs-Session` header; whoever creates an environment holds it from the start. Transitions
answer when they are over (the page follows them live on /api/events meanwhile); a client that
goes away does not stop a transition, which completes in its environment actor.
CREATE and DESTROY happen outside the environment state machine and are published as
environment events here, as the gRPC service does, so every subscriber sees them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from actors.manager import new_environment_id
from aliecs.api import Environment
from aliecs.environment import fsm as states
from aliecs.errors import AliecsError
from aliecs.events import DONE_ERROR, DONE_OK, STARTED, EnvironmentEvent
from aliecs.server.streams import DESTROY
from aliecs.web import render
from aliecs.web.context import Context, context
from aliecs.web.errors import BadRequest
from aliecs.web.inputs import (
    MAX_WORKFLOW,
    bool_field,
    bool_query,
    json_body,
    path_id,
    session,
    text_field,
    variables,
)

CREATE = "CREATE"
routes = web.RouteTableDef()


def _announce(
    ctx: Context, env_id: str, state: str, transition: str, status: str, message: str = "", error: str = ""
) -> None:
    ctx.core.events.publish(
        EnvironmentEvent(
            env_id, state, transition=transition, transition_status=status, message=message, error=error
        )
    )


def _summary(request: web.Request, env: Environment) -> dict[str, Any]:
    return render.summary(env, context(request).core.locks.holder(env.id), session(request))


def _detail(request: web.Request, env: Environment) -> dict[str, Any]:
    ctx = context(request)
    return render.detail(env, ctx.core.locks.holder(env.id), session(request), ctx.tracker)


@routes.get("/api/environments")
async def list_environments(request: web.Request) -> web.Response:
    ctx = context(request)
    envs = sorted(await ctx.core.environments(), key=lambda env: env.created_ms)
    return web.json_response({"environments": [_summary(request, env) for env in envs]})


@routes.post("/api/environments")
async def create_environment(request: web.Request) -> web.Response:
    """DEPLOY a new environment from a workflow; answers 201 when it is DEPLOYED."""
    ctx = context(request)
    body = await json_body(request)
    workflow = text_field(body, "workflow", MAX_WORKFLOW)
    user_vars = variables(body)
    operator = text_field(body, "operator", 200, required=False)
    env_id = new_environment_id()
    if operator:  # nobody else can take it while it deploys
        ctx.core.locks.take(env_id, operator, session(request))
    _announce(ctx, env_id, "PENDING", CREATE, STARTED, message="creating environment")
    try:
        env = await ctx.core.new_environment(workflow, user_vars, env_id=env_id)
    except BaseException as exc:
        ctx.core.locks.forget(env_id)
        _announce(ctx, env_id, states.DONE, CREATE, DONE_ERROR, error=str(exc)[:2000])
        raise
    _announce(ctx, env_id, env.state, CREATE, DONE_OK, message="environment deployed")
    return web.json_response(_detail(request, env), status=201)


@routes.get("/api/environments/{id}")
async def show_environment(request: web.Request) -> web.Response:
    ctx = context(request)
    return web.json_response(_detail(request, ctx.core.environment(path_id(request))))


@routes.post("/api/environments/{id}/transition")
async def transition_environment(request: web.Request) -> web.Response:
    ctx = context(request)
    env = ctx.core.environment(path_id(request))
    body = await json_body(request)
    event = states.normalize_event(text_field(body, "event", 40))
    if event not in states.EVENTS:
        raise BadRequest(f"event must be one of {', '.join(states.EVENTS)} (or START, STOP)")
    ctx.core.locks.require(env.id, session(request), event)
    result = await env.transition(event)
    return web.json_response({"result": render.transition(result), "environment": _detail(request, env)})


@routes.delete("/api/environments/{id}")
async def destroy_environment(request: web.Request) -> web.Response:
    """Tear down (STOP/RESET/EXIT as needed, every process killed); a RUNNING one needs allow_running."""
    ctx = context(request)
    env = ctx.core.environment(path_id(request))
    allow_running = bool_query(request, "allow_running")
    ctx.core.locks.require(env.id, session(request), "destroying it")
    if env.state == states.RUNNING and not allow_running:
        raise AliecsError(
            f"environment {env.id} is RUNNING (run {env.run_number}): stop it first or pass "
            "allow_running=true"
        )
    tasks = env.task_count
    _announce(ctx, env.id, env.state, DESTROY, STARTED, message="destroying environment")
    try:
        await env.destroy(allow_running=True)
    except Exception as exc:
        _announce(ctx, env.id, env.state, DESTROY, DONE_ERROR, error=str(exc)[:2000])
        raise
    _announce(ctx, env.id, states.DONE, DESTROY, DONE_OK, message="environment destroyed")
    return web.json_response({"id": env.id, "state": states.DONE, "tasks_killed": tasks})


@routes.post("/api/environments/{id}/lock")
async def take_lock(request: web.Request) -> web.Response:
    """Take control; someone else's lock is only taken over with `force` (the holder is told live)."""
    ctx = context(request)
    env = ctx.core.environment(path_id(request))
    body = await json_body(request)
    operator = text_field(body, "operator", 200)
    taken = ctx.core.locks.take(env.id, operator, session(request), force=bool_field(body, "force"))
    return web.json_response({"id": env.id, "lock": render.lock(taken, session(request))})


@routes.delete("/api/environments/{id}/lock")
async def release_lock(request: web.Request) -> web.Response:
    ctx = context(request)
    env = ctx.core.environment(path_id(request))
    ctx.core.locks.release(env.id, session(request))
    return web.json_response({"id": env.id, "lock": None})
