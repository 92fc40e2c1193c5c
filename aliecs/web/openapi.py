"""The OpenAPI 3 document of the REST API, served at /api/openapi.json.

Written by hand next to the handlers it describes; a test checks that every route of the app is
described here and every path here is a route of the app, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from aliecs.environment.fsm import EVENTS
from aliecs.web.errors import MAX_BODY
from aliecs.web.inputs import MAX_VARS, SESSION_HEADER

JSON = "application/json"
STATES = ["STANDBY", "DEPLOYED", "CONFIGURED", "RUNNING", "ERROR", "DONE"]


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741 - a schema, not a variable anyone reads as 1
B = {"type": "boolean"}
N = {"type": "number"}
NULLABLE_MS = {"type": "integer", "description": "ms since the epoch; 0 when not (yet) known"}


def answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {JSON: {"schema": schema}}
    return out


def errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "bad input (names the field)",
        401: "token required or wrong (only when the core has a token)",
        403: "cross-site request, or a non-loopback host name on a loopback core",
        404: "no such environment, task, workflow, repository or revision",
        409: "not allowed in the current state, or another transition is running",
        413: f"request body larger than {MAX_BODY} bytes",
        415: "request body is not JSON",
        423: "the environment is controlled by someone else (or by nobody): take its lock first",
        502: "the transition failed in the tasks or hooks; the environment is now in `state` (ERROR)",
        503: "tasks could not be placed on any node; or, for event streams, too many open or shutting down",
    }
    return {str(code): answer(reasons[code], ref("Error")) for code in codes}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def path_param(description: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
    }


def query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or S}


SESSION = {
    "name": SESSION_HEADER,
    "in": "header",
    "required": False,
    "description": "the caller's session id (8-128 of [A-Za-z0-9_-]); a lock belongs to the session "
    "that took it, and `lock.mine` in answers is computed against it",
    "schema": {"type": "string"},
}
ENV_ID = path_param("environment id")
TASK_ID = path_param("task id")

SCHEMAS: dict[str, Any] = {
    "Error": obj(
        ["error", "status"],
        error=S,
        status=I,
        state={"type": "string", "description": "environment state after a failed transition"},
        allowed=array(S),
        task_errors=array(obj(task_id=S, name=S, host=S, message=S, critical=B)),
    ),
    "Lock": {
        **obj(["operator", "since_ms", "mine"], operator=S, since_ms=I, mine=B),
        "nullable": True,
        "description": "who controls the environment; null when nobody does",
    },
    "Task": obj(
        ["id", "name", "state", "host", "pid", "environment_id"],
        id=S,
        name=S,
        class_name=S,
        host=S,
        pid=I,
        state=S,
        status=S,
        critical=B,
        role_path=S,
        log_path=S,
        error=S,
        excluded=B,
        environment_id=S,
    ),
    "RoleNode": obj(
        ["name", "path", "state", "children"],
        name=S,
        path=S,
        state=S,
        status=S,
        task={**ref("Task"), "nullable": True},
        children=array(ref("RoleNode")),
    ),
    "TransitionResult": obj(
        ["event", "from_state", "to_state"],
        event=S,
        from_state=S,
        to_state=S,
        started_ms=I,
        duration_s=N,
        run_number=I,
        warnings=array(S),
    ),
    "Run": obj(
        ["run_number", "start_ms", "outcome"],
        run_number=I,
        start_ms=NULLABLE_MS,
        started_ms=NULLABLE_MS,
        stop_ms=NULLABLE_MS,
        end_ms=NULLABLE_MS,
        outcome={"type": "string", "enum": ["running", "stopped", "error"]},
        error=S,
    ),
    "Progress": {
        **obj(
            ["event", "tasks_done", "tasks_total", "deadline_s"],
            event=S,
            target_state=S,
            tasks_done=I,
            tasks_total=I,
            started_ms=NULLABLE_MS,
            elapsed_s={"type": "number", "nullable": True},
            deadline_s=N,
        ),
        "nullable": True,
        "description": "the running transition; null when none runs",
    },
    "EnvironmentSummary": obj(
        ["id", "workflow", "state", "run_number", "allowed_events", "lock"],
        id=S,
        workflow=S,
        state={"type": "string", "enum": STATES},
        run_number={"type": "integer", "description": "current run; 0 when not RUNNING"},
        last_run_number=I,
        run_start_ms=NULLABLE_MS,
        current_transition=S,
        created_ms=I,
        tasks=I,
        error=S,
        lock=ref("Lock"),
        allowed_events=array({"type": "string", "enum": list(EVENTS)}),
    ),
    "Environment": {
        "allOf": [
            ref("EnvironmentSummary"),
            obj(
                description=S,
                user_vars={"type": "object", "additionalProperties": S},
                tree={**ref("RoleNode"), "nullable": True},
                task_list=array(ref("Task")),
                history=array(ref("TransitionResult")),
                runs=array(ref("Run")),
                progress=ref("Progress"),
            ),
        ]
    },
    "VarSpec": obj(
        ["defaultValue"],
        defaultValue=S,
        type=S,
        label=S,
        description=S,
        widget={"type": "string", "description": "editBox, checkBox, dropDownBox, comboBox, ..."},
        panel=S,
        allowedValues=array(S),
        index=I,
        visibleIf={"type": "string", "description": 'e.g. $$dcs_enabled === "true"'},
        enabledIf=S,
        rows=I,
    ),
    "Template": obj(
        ["repository", "name", "revision", "reference", "variables"],
        repository=S,
        name=S,
        revision=S,
        public=B,
        description=S,
        reference={"type": "string", "description": "what to pass as `workflow` to create from it"},
        variables={"type": "object", "additionalProperties": ref("VarSpec")},
    ),
    "Repository": obj(
        ["identifier", "default", "default_revision"],
        identifier=S,
        url=S,
        kind=S,
        default=B,
        default_revision=S,
    ),
}

PATHS: dict[str, Any] = {
    "/api/environments": {
        "get": {
            "summary": "List environments (oldest first)",
            "parameters": [SESSION],
            "responses": {"200": answer("environments", obj(environments=array(ref("EnvironmentSummary"))))},
        },
        "post": {
            "summary": "Create an environment and DEPLOY it; answers when it is DEPLOYED",
            "description": "With `operator`, the caller's session holds the new environment's lock.",
            "parameters": [SESSION],
            "requestBody": body(
                obj(
                    ["workflow"],
                    workflow={
                        "type": "string",
                        "description": "name, name@revision or repo/workflows/name[@rev]",
                    },
                    vars={
                        "type": "object",
                        "maxProperties": MAX_VARS,
                        "additionalProperties": {"oneOf": [S, N, B]},
                    },
                    operator=S,
                )
            ),
            "responses": {
                "201": answer("the environment, DEPLOYED", ref("Environment")),
                **errors(400, 404, 409, 413, 415, 423, 502, 503),
            },
        },
    },
    "/api/environments/{id}": {
        "get": {
            "summary": "One environment with its role tree, tasks, transitions, runs and progress",
            "parameters": [ENV_ID, SESSION],
            "responses": {"200": answer("the environment", ref("Environment")), **errors(400, 404)},
        },
        "delete": {
            "summary": "Destroy an environment (STOP/RESET/EXIT as needed; no process left)",
            "parameters": [
                ENV_ID,
                SESSION,
                query("allow_running", "destroy even when RUNNING", {"type": "boolean"}),
            ],
            "responses": {
                "200": answer("destroyed", obj(id=S, state=S, tasks_killed=I)),
                **errors(400, 404, 409, 423),
            },
        },
    },
    "/api/environments/{id}/transition": {
        "post": {
            "summary": "Run one transition; answers when it is over (needs the lock)",
            "parameters": [ENV_ID, SESSION],
            "requestBody": body(obj(["event"], event={"type": "string", "enum": [*EVENTS, "START", "STOP"]})),
            "responses": {
                "200": answer(
                    "the result and the environment after it",
                    obj(result=ref("TransitionResult"), environment=ref("Environment")),
                ),
                **errors(400, 404, 409, 413, 415, 423, 502),
            },
        },
    },
    "/api/environments/{id}/lock": {
        "post": {
            "summary": "Take control of an environment (`force` takes it over from someone else)",
            "parameters": [ENV_ID, SESSION],
            "requestBody": body(obj(["operator"], operator=S, force=B)),
            "responses": {
                "200": answer("the lock, now yours", obj(id=S, lock=ref("Lock"))),
                **errors(400, 404, 415, 423),
            },
        },
        "delete": {
            "summary": "Release control of an environment",
            "parameters": [ENV_ID, SESSION],
            "responses": {"200": answer("released", obj(id=S, lock=ref("Lock"))), **errors(400, 404, 423)},
        },
    },
    "/api/tasks": {
        "get": {
            "summary": "Tasks of every environment, filtered; counts per state",
            "parameters": [
                query("environment", "only this environment's tasks"),
                query("state", "only tasks in this state"),
                query("host", "only tasks on this node"),
                query("name", "a glob, or a part of the task name"),
                query("limit", "at most this many tasks (1-10000, default 1000)", I),
            ],
            "responses": {
                "200": answer(
                    "tasks",
                    obj(
                        tasks=array(ref("Task")),
                        total=I,
                        counts={"type": "object", "additionalProperties": I},
                    ),
                ),
                **errors(400),
            },
        },
    },
    "/api/tasks/{id}": {
        "get": {
            "summary": "One task",
            "parameters": [TASK_ID],
            "responses": {"200": answer("the task", ref("Task")), **errors(400, 404)},
        },
    },
    "/api/tasks/{id}/log": {
        "get": {
            "summary": "The last lines of a task's output",
            "parameters": [TASK_ID, query("lines", "how many lines (1-2000, default 100)", I)],
            "responses": {
                "200": answer("log tail", obj(task_id=S, path=S, lines=array(S), truncated=B)),
                **errors(400, 404),
            },
        },
    },
    "/api/templates": {
        "get": {
            "summary": "Workflow templates with their public variables (what the create form shows)",
            "parameters": [
                query("repo", "repository glob"),
                query("revision", "revision or glob (default: each repository's default revision)"),
                query("all", "also templates whose name is not !public", {"type": "boolean"}),
            ],
            "responses": {
                "200": answer("templates", obj(templates=array(ref("Template")))),
                **errors(400, 404),
            },
        },
    },
    "/api/repositories": {
        "get": {
            "summary": "Configuration repositories",
            "responses": {
                "200": answer(
                    "repositories",
                    obj(repositories=array(ref("Repository")), global_default_revision=S),
                )
            },
        },
    },
    "/api/info": {
        "get": {
            "summary": "What this core is: version, nodes, counts",
            "responses": {
                "200": answer(
                    "framework info",
                    obj(
                        product=S,
                        version=S,
                        instance_name=S,
                        framework_id=S,
                        state_dir=S,
                        environments=I,
                        tasks=I,
                        nodes=array(obj(hostname=S, attributes={"type": "object"}, cpu=N, memory=N)),
                        token_required=B,
                    ),
                )
            },
        },
    },
    "/api/events": {
        "get": {
            "summary": "Live events (server-sent events): the events of gRPC Subscribe, plus lock changes",
            "description": "Each `data:` line is one events.Event in the protobuf JSON mapping (as in the "
            "audit log): one of environmentEvent, taskEvent, roleEvent, runEvent, callEvent, "
            "coreStartEvent; or a lockEvent {environmentId, operator, sinceMs, locked}. With "
            "`environment`, only that environment's events, ending after it is destroyed.",
            "parameters": [query("environment", "only this environment's events")],
            "responses": {
                "200": {"description": "event stream", "content": {"text/event-stream": {"schema": S}}},
                **errors(400, 503),
            },
        },
    },
    "/api/login": {
        "post": {
            "summary": "Check a token and keep it in an HttpOnly cookie (for the page and its event stream)",
            "requestBody": body(obj(["token"], token=S)),
            "responses": {"200": answer("logged in", obj(ok=B)), **errors(400, 401, 415)},
        },
    },
    "/api/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {"200": answer("OpenAPI 3 document", {"type": "object"})},
        },
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "aliecs REST API",
            "version": "1",
            "description": "Environments, tasks, templates and live events of an aliecs core. "
            "When the core has a token, send `Authorization: Bearer <token>` (or log in).",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
