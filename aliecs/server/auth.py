"""Bearer-token authentication for the control server.

Loopback listeners need no token (only local users can connect); anything else must be given one,
and every request must then carry `authorization: Bearer <token>` metadata. Programs take the
token from a file (`--token-file`, readable by its owner only) or from `ALIECS_TOKEN`, never from
a command-line argument, which every user of the machine can read in `ps`. The check runs on
grpclib's RecvRequest event, before any handler, so no RPC can forget it.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import stat
from pathlib import Path

from grpclib.const import Status
from grpclib.events import RecvRequest, listen
from grpclib.exceptions import GRPCError
from grpclib.server import Server

TOKEN_ENV = "ALIECS_TOKEN"


MAX_TOKEN_BYTES = 4096


class TokenRequiredError(ValueError):
    """Refusing to listen on a non-loopback address without a token."""


class TokenFileError(ValueError):
    """A token file that cannot be used; the message says why and what to do."""


def read_token_file(path: Path) -> str:
    """The token in `path` (surrounding whitespace removed); the file must be private and non-empty."""
    try:
        info = path.stat()
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise TokenFileError(
                f"token file {path} can be read by other users: `chmod 600 {path}` and try again"
            )
        if info.st_size > MAX_TOKEN_BYTES:
            raise TokenFileError(f"token file {path} is larger than {MAX_TOKEN_BYTES} bytes")
        token = path.read_text().strip()
    except OSError as exc:
        raise TokenFileError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    if not token:
        raise TokenFileError(f"token file {path} is empty")
    return token


def resolve_token(token_file: Path | None) -> str | None:
    """The token from `token_file` if given, else from ALIECS_TOKEN, else None."""
    if token_file is not None:
        return read_token_file(token_file)
    return os.environ.get(TOKEN_ENV, "").strip() or None


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
            f"the experiment; pass --token-file or set {TOKEN_ENV}, or listen on 127.0.0.1"
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
                f"(coconut --token-file or {TOKEN_ENV})",
            )
        value = sent.encode() if isinstance(sent, str) else bytes(sent)
        if not hmac.compare_digest(value, expected):
            raise GRPCError(Status.UNAUTHENTICATED, "wrong token for this core")

    listen(server, RecvRequest, on_request)
