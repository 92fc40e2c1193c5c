"""Bearer-token authentication for the control server.

Loopback listeners need no token (only local users can connect); anything else must be given one,
and every request must then carry `authorization: Bearer <token>` metadata. The check runs on
grpclib's RecvRequest event, before any handler, so no RPC can forget it.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket

from grpclib.const import Status
from grpclib.events import RecvRequest, listen
from grpclib.exceptions import GRPCError
from grpclib.server import Server

TOKEN_ENV = "ALIECS_TOKEN"


class TokenRequiredError(ValueError):
    """Refusing to listen on a non-loopback address without a token."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False


def check_listen(host: str, token: str | None) -> None:
    if not token and not is_loopback(host):
        raise TokenRequiredError(
            f"refusing to listen on {host} without a token: anyone who can reach it could control "
            f"the experiment; pass --token or set {TOKEN_ENV}, or listen on 127.0.0.1"
        )


def bearer(token: str) -> dict[str, str]:
    """The metadata a client sends."""
    return {"authorization": f"Bearer {token}"}


def require_token(server: Server, token: str) -> None:
    expected = f"Bearer {token}".encode()

    async def on_request(event: RecvRequest) -> None:
        sent = event.metadata.get("authorization")
        if sent is None:
            raise GRPCError(
                Status.UNAUTHENTICATED,
                "this core requires a token: send metadata 'authorization: Bearer <token>' "
                f"(coconut --token or {TOKEN_ENV})",
            )
        value = sent.encode() if isinstance(sent, str) else bytes(sent)
        if not hmac.compare_digest(value, expected):
            raise GRPCError(Status.UNAUTHENTICATED, "wrong token for this core")

    listen(server, RecvRequest, on_request)
