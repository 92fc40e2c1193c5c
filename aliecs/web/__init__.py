"""The web GUI's backend: REST over aiohttp under /api/, live events, and the page at /.

Modules, one job each: `app` (the server, its guards and lifecycle), `environments` (environments
and locks), `catalogue` (tasks, templates, repositories, info), `live` (server-sent events),
`tracker` (transition starts and run history from the event bus), `render` (core snapshots ->
JSON), `inputs` (bounded request parsing), `errors` (exceptions -> JSON errors), `openapi` (the
document at /api/openapi.json). The page itself is plain HTML/JS/CSS in `static/`.
"""

from aliecs.web.app import DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT, WebServer

__all__ = ["DEFAULT_HTTP_HOST", "DEFAULT_HTTP_PORT", "WebServer"]
