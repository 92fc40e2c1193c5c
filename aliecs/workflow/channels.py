"""Data channels between tasks: bind addresses allocated at DEPLOY, connect targets resolved at CONFIGURE.

A task binds the channels of its task descriptor and of its role; a role `connect`s to
`<role path>:<channel>` of another role's task (or to a literal tcp:// / ipc:// address). At
CONFIGURE every task receives its channels as the flat property keys FairMQ devices expect:
`chans.<name>.0.address|method|type|transport|sndBufSize|rcvBufSize|rateLogging` and
`chans.<name>.numSockets`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aliecs.workflow.errors import TemplateError
from aliecs.workflow.render import render_value
from aliecs.workflow.template import Channel, Role


@dataclass(frozen=True)
class Endpoint:
    """Where a bound channel listens (`bind_address`) and how peers reach it (`connect_address`)."""

    bind_address: str
    connect_address: str


GLOBAL = "::"  # endpoints of global aliases are keyed (GLOBAL, alias)


def bind_channels(role: Role, stack: Mapping[str, str]) -> list[Channel]:
    """The channels a task role binds: its descriptor's `bind` list, then the role's own and the
    ones inherited from its ancestors (a role-level channel wins over a same-named class one)."""
    assert role.task is not None
    task_class = role.task.task_class
    channels: dict[str, Channel] = {}
    for template in task_class.bind:

        def field(key: str, default: str, template_fields: Mapping[str, str] = template.fields) -> str:
            value = render_value(
                template_fields.get(key, default), stack, file=task_class.source, role_path=role.path
            )
            return value or default

        channel = Channel(
            name=render_value(template.name, stack, file=task_class.source, role_path=role.path),
            type=render_value(template.type, stack, file=task_class.source, role_path=role.path),
            target=field("target", ""),
            transport=field("transport", "default"),
            snd_buf_size=field("sndBufSize", "1000"),
            rcv_buf_size=field("rcvBufSize", "1000"),
            rate_logging=field("rateLogging", "0"),
            addressing=field("addressing", "tcp"),
            global_name=field("global", ""),
        )
        channels[channel.name] = channel
    for channel in role.bind:
        channels[channel.name] = channel
    return list(channels.values())


def effective_endpoint(channel: Channel, allocated: Endpoint, node_address: str) -> Endpoint:
    """A bind with an explicit `tcp://`/`ipc://` target listens there (no allocation, no matching):
    peers dial the same address with `*` replaced by the node's address."""
    target = channel.target.strip()
    if not target.startswith(("tcp://", "ipc://")):
        return allocated
    return Endpoint(target, target.replace("*", node_address, 1))


def endpoint_keys(role_path: str, channel: Channel) -> list[tuple[str, str]]:
    """The keys a bound channel is reachable by: `role.path:name`, and `::alias` when global."""
    keys = [(role_path, channel.name)]
    if channel.global_name:
        keys.append((GLOBAL, channel.global_name))
    return keys


def channel_keys(channel: Channel, address: str, method: str) -> dict[str, str]:
    prefix = f"chans.{channel.name}"
    return {
        f"{prefix}.numSockets": "1",
        f"{prefix}.0.address": address,
        f"{prefix}.0.method": method,
        f"{prefix}.0.type": channel.type,
        f"{prefix}.0.transport": channel.transport,
        f"{prefix}.0.sndBufSize": channel.snd_buf_size,
        f"{prefix}.0.rcvBufSize": channel.rcv_buf_size,
        f"{prefix}.0.rateLogging": channel.rate_logging,
    }


def resolve_target(channel: Channel, role_path: str, endpoints: Mapping[tuple[str, str], Endpoint]) -> str:
    """The address a `connect` channel must dial: a literal address or a bound channel of another role."""
    target = channel.target.strip()
    if target.startswith(("tcp://", "ipc://", "inproc://")):
        return target
    if target.startswith(GLOBAL):
        path, sep, name = GLOBAL, GLOBAL, target[len(GLOBAL) :]
    else:
        path, sep, name = target.rpartition(":")
    if not sep or not path or not name:
        raise TemplateError(
            f"connect channel {channel.name!r} has target {target!r}; "
            "expected 'role.path:channel' or an address",
            role_path=role_path,
        )
    endpoint = endpoints.get((path, name))
    if endpoint is None:
        known = ", ".join(f"::{n}" if p == GLOBAL else f"{p}:{n}" for p, n in sorted(endpoints)) or "none"
        raise TemplateError(
            f"connect channel {channel.name!r} targets {target!r}, but no task binds that channel "
            f"(bound channels: {known})",
            role_path=role_path,
        )
    return endpoint.connect_address
