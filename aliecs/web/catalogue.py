"""Read-only REST resources: tasks (with filters and log tails), workflow templates with their
public variables, configuration repositories, and what this core is.

Template and repository listings read git objects, and log tails read files: both run in a worker
thread so the event loop keeps serving transitions and event streams.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from aiohttp import web

from aliecs.server.errors import UnknownTaskError
from aliecs.web import render
from aliecs.web.context import context
from aliecs.web.inputs import bool_query, int_query, path_id, text_query
from aliecs.workflow.repos import RepositoryError

routes = web.RouteTableDef()

MAX_TASKS = 10_000
MAX_LOG_LINES = 2000
MAX_LOG_BYTES = 256 * 1024


def _version() -> str:
    try:
        return version("aliecs")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "0.0.0"


async def _all_tasks(request: web.Request) -> list[dict[str, Any]]:
    core = context(request).core
    return [render.task(info, env.id) for env in await core.environments() for info in env.tasks]


@routes.get("/api/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    """Filters (all optional, combined): environment, state, host, name (a glob, or a part of the
    name); `counts` are per state over the filtered tasks, before `limit`."""
    environment = text_query(request, "environment", 64)
    state = text_query(request, "state", 32).upper()
    host = text_query(request, "host")
    name = text_query(request, "name")
    limit = int_query(request, "limit", 1000, 1, MAX_TASKS)
    pattern = name if any(c in name for c in "*?[") else f"*{name}*"
    tasks = [
        t
        for t in await _all_tasks(request)
        if (not environment or t["environment_id"] == environment)
        and (not state or t["state"] == state)
        and (not host or t["host"] == host)
        and (not name or fnmatch.fnmatchcase(t["name"], pattern))
    ]
    return web.json_response(
        {"tasks": tasks[:limit], "total": len(tasks), "counts": dict(Counter(t["state"] for t in tasks))}
    )


async def _task(request: web.Request) -> dict[str, Any]:
    task_id = path_id(request)
    for found in await _all_tasks(request):
        if found["id"] == task_id:
            return found
    raise UnknownTaskError(f"no task with id {task_id!r}; list tasks with GET /api/tasks")


@routes.get("/api/tasks/{id}")
async def show_task(request: web.Request) -> web.Response:
    return web.json_response(await _task(request))


def tail(path: Path, lines: int) -> tuple[list[str], bool]:
    """The last `lines` lines of a file, reading at most MAX_LOG_BYTES from its end; `truncated`
    says that older output exists."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        start = max(0, size - MAX_LOG_BYTES)
        handle.seek(start)
        data = handle.read()
    text = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and text:
        text = text[1:]  # the first line was cut in the middle
    return text[-lines:], start > 0 or len(text) > lines


@routes.get("/api/tasks/{id}/log")
async def task_log(request: web.Request) -> web.Response:
    lines = int_query(request, "lines", 100, 1, MAX_LOG_LINES)
    task = await _task(request)
    if not task["log_path"]:
        return web.json_response({"task_id": task["id"], "path": "", "lines": [], "truncated": False})
    path = Path(task["log_path"])
    try:
        text, truncated = await asyncio.to_thread(tail, path, lines)
    except FileNotFoundError:
        text, truncated = [], False
    return web.json_response(
        {"task_id": task["id"], "path": str(path), "lines": text, "truncated": truncated}
    )


@routes.get("/api/templates")
async def list_templates(request: web.Request) -> web.Response:
    """Templates of the repositories matching `repo` (a glob) at `revision`, public ones unless `all`."""
    repo = text_query(request, "repo")
    revision = text_query(request, "revision")
    every = bool_query(request, "all")
    manager = context(request).core.repos
    found = await asyncio.to_thread(
        lambda: manager.catalogue(repo_pattern=repo, revision_pattern=revision, all_workflows=every)
    )
    return web.json_response({"templates": [render.template_info(info) for info in found]})


@routes.get("/api/repositories")
async def list_repositories(request: web.Request) -> web.Response:
    manager = context(request).core.repos

    def work() -> dict[str, Any]:
        repos = []
        for info in manager.list_repos():
            try:
                revision = manager.default_revision(info.identifier)
            except RepositoryError as exc:  # one broken repository must not hide the others
                revision = f"(none: {str(exc)[:200]})"
            repos.append(
                {
                    "identifier": info.identifier,
                    "url": info.url,
                    "kind": info.kind,
                    "default": info.identifier == manager.default,
                    "default_revision": revision,
                }
            )
        return {"repositories": repos, "global_default_revision": manager.global_default_revision}

    return web.json_response(await asyncio.to_thread(work))


@routes.get("/api/info")
async def framework_info(request: web.Request) -> web.Response:
    ctx = context(request)
    core = ctx.core
    envs = await core.environments()
    return web.json_response(
        {
            "product": "aliecs",
            "version": _version(),
            "instance_name": ctx.instance_name,
            "framework_id": str(core.state_dir),
            "state_dir": str(core.state_dir),
            "environments": len(envs),
            "tasks": len(core.tasks()),
            "nodes": [
                {
                    "hostname": node.hostname,
                    "attributes": dict(node.attributes),
                    "cpu": node.cpu,
                    "memory": node.memory,
                }
                for node in core.nodes
            ],
            "token_required": bool(ctx.token),
        }
    )
