"""`host:port` as people type it: the one parser of the CLIs and clients (OCC tasks, the core)."""

from __future__ import annotations

LOCALHOST = "127.0.0.1"


def parse_address(
    address: str, default_port: int | None = None, *, what: str = "address", example: str = ""
) -> tuple[str, int]:
    """Split `host:port`, `[v6]:port`, `host` or `:port` into (host, port); ValueError if bad.

    A missing host is 127.0.0.1; a missing port is `default_port`, or an error when there is none.
    An IPv6 host with a port needs brackets (`[::1]:47100`). `what` and `example` go into the error.
    """
    text = address.strip()
    hint = f" (e.g. {example})" if example else ""
    if not text:
        raise ValueError(f"empty {what}{hint}")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad {what} {address!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad {what} {address!r}{hint}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    host = host or LOCALHOST
    if not port_text:
        if default_port is None:
            raise ValueError(f"{what} {address!r} is not host:port{hint}")
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad {what} {address!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad {what} {address!r}: port {port} out of range")
    return host, port
