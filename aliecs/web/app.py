"""The web server: the REST API under /api/, live events, the OpenAPI document and the page at /.

`WebServer` has the explicit lifecycle of aiohttp's runners: `start()` binds and serves,
`close()` ends the event streams, stops listening and waits for requests in flight. It binds
127.0.0.1 by default; on any other address it refuses to start without a token, the same rule
as the gRPC control API (`aliecs.server.auth`).

Two guards run before every /api/ handler:
  * the token, when one is set: `Authorization: Bearer <token>`, or the cookie the page gets from
    POST /api/login (a browser cannot put headers on an event stream);
  * the request's origin: a page from another web site must not drive the experiment through the
    operator's browser, so a cross-site `Origin` is refused, and a server on loopback only answers
    to loopback host names (a rebinding DNS name pointing at 127.0.0.1 is refused).
"""

from __future__ import annotations

import hmac
from importlib.resources import files
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from aliecs.api import Core
from aliecs.server.auth import check_listen, is_loopback
from aliecs.web import catalogue, environments, live
from aliecs.web.context import CONTEXT, Context, context
from aliecs.web.errors import MAX_BODY, Forbidden, Handler, Unauthorized, json_errors
from aliecs.web.inputs import json_body, text_field
from aliecs.web.openapi import document
from aliecs.web.tracker import Tracker

DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8080
TOKEN_COOKIE = "aliecs_token"
STATIC = Path(str(files("aliecs.web") / "static"))

routes = web.RouteTableDef()


def _host_name(host: str) -> str:
    """`name:port`, `[v6]:port` or `name` -> the name."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _check_origin(request: web.Request, loopback: bool) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise Forbidden("cross-site request refused: use the page served by this core")
    if loopback and not is_loopback(_host_name(request.host)):
        raise Forbidden("this core listens on loopback: open it as http://127.0.0.1:<port>/ or localhost")


def _check_token(request: web.Request, token: str) -> None:
    header = request.headers.get("Authorization", "")
    sent = header[len("Bearer ") :] if header.startswith("Bearer ") else request.cookies.get(TOKEN_COOKIE, "")
    if not sent:
        raise Unauthorized("this core requires a token: send 'Authorization: Bearer <token>' or log in")
    if not hmac.compare_digest(sent.encode(), token.encode()):
        raise Unauthorized("wrong token for this core")


def guard(loopback: bool) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            _check_origin(request, loopback)
            token = context(request).token
            if token and request.path != "/api/login":
                _check_token(request, token)
        return await handler(request)

    return check


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    """Check a token and keep it in an HttpOnly cookie, so the page's requests and its event
    stream carry it."""
    token = context(request).token
    body = await json_body(request)
    sent = text_field(body, "token", 1024)
    if token and not hmac.compare_digest(sent.encode(), token.encode()):
        raise Unauthorized("wrong token for this core")
    response = web.json_response({"ok": True})
    if token:
        response.set_cookie(TOKEN_COOKIE, sent, httponly=True, samesite="Strict", path="/api/")
    return response


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def build_app(
    core: Core, tracker: Tracker, token: str | None = None, loopback: bool = True
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors, guard(loopback)])
    app[CONTEXT] = Context(core=core, tracker=tracker, token=token)
    for table in (routes, environments.routes, catalogue.routes, live.routes):
        app.add_routes(table)
    app.router.add_static("/static/", STATIC, append_version=False)
    return app


class WebServer:
    """The page and the REST API of a started `Core` (the server never starts or stops the core)."""

    def __init__(
        self,
        core: Core,
        host: str = DEFAULT_HTTP_HOST,
        port: int = DEFAULT_HTTP_PORT,
        token: str | None = None,
    ) -> None:
        check_listen(host, token)
        self.core = core
        self.host = host
        self.requested_port = port
        self.tracker = Tracker(core.events)
        self.app = build_app(core, self.tracker, token, loopback=is_loopback(host))
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5.0)
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        for address in self.runner.addresses:
            if isinstance(address, tuple):
                return int(address[1])
        return self.requested_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        await self.tracker.start()
        await self.runner.setup()
        self._site = web.TCPSite(self.runner, self.host, self.requested_port)
        try:
            await self._site.start()
        except BaseException:
            await self.runner.cleanup()
            await self.tracker.stop()
            raise

    async def close(self) -> None:
        self.app[CONTEXT].close_streams()
        await self.runner.cleanup()
        await self.tracker.stop()

    async def __aenter__(self) -> WebServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
