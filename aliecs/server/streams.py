"""Event fan-out for Subscribe: filters per subscriber, and buffers for auto-environments.

A NewAutoEnvironment client names a subscription id and calls Subscribe(id), before or after
NewAutoEnvironment (the original's coconut subscribes first): Subscribe with an id that is neither
an environment nor a registered auto-environment waits for a NewAutoEnvironment with that id, as
the original does; events of the auto-environment are buffered under the id from the moment it is
created, so a late subscriber still sees the whole cycle. The stream ends when the environment is
destroyed, by its own cycle or from outside. Subscribe with an environment id streams that
environment's events until it is destroyed; Subscribe with an empty id streams everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from aliecs.events import EnvironmentEvent, Event, EventBus, Subscription
from aliecs.server.events import environment_id

DESTROY = "DESTROY"
# Subscriptions waiting for their NewAutoEnvironment; more are refused (each holds a bus subscription).
MAX_WAITING = 256


def is_destroyed(event: Event, env_id: str) -> bool:
    """The last event of an environment: its DESTROY transition finished (well or not)."""
    return (
        isinstance(event, EnvironmentEvent)
        and event.environment_id == env_id
        and event.transition == DESTROY
        and event.transition_status in ("DONE_OK", "DONE_ERROR")
    )


class AutoSubscription:
    """Events of one auto-environment, buffered until its subscriber reads them. `env_id` is empty
    while a subscriber waits for the NewAutoEnvironment that will name it.

    `abandoned` is set when the subscriber leaves before the cycle is over (Ctrl-C in `coconut env
    create -a`): the cycle then stops its run and tears the environment down rather than running on
    with nobody watching."""

    def __init__(self, bus: EventBus, env_id: str) -> None:
        self.env_id = env_id
        self.subscription = bus.subscribe()
        self.claimed = False
        self.finished = False
        self.abandoned = asyncio.Event()

    async def events(self) -> AsyncIterator[Event]:
        async for event in self.subscription:
            if not self.env_id or environment_id(event) != self.env_id:
                continue
            yield event
            if is_destroyed(event, self.env_id):
                self.finished = True
                return

    def close(self) -> None:
        self.subscription.close()


class Streams:
    def __init__(self, bus: EventBus, is_environment: Callable[[str], bool] = lambda _id: False) -> None:
        self.bus = bus
        self.is_environment = is_environment
        self.auto: dict[str, AutoSubscription] = {}
        self.live: set[Subscription] = set()

    def register_auto(self, subscription_id: str, env_id: str) -> AutoSubscription:
        """The auto-environment `env_id` streams under `subscription_id` (a subscriber may already wait)."""
        auto = self.auto.get(subscription_id)
        if auto is not None and auto.env_id:
            raise ValueError(f"subscription id {subscription_id!r} is already in use; choose another one")
        if auto is None:
            auto = self.auto[subscription_id] = AutoSubscription(self.bus, env_id)
        auto.env_id = env_id
        return auto

    def release_auto(self, subscription_id: str, auto: AutoSubscription) -> None:
        """The auto-environment's cycle is over: drop its buffer if nobody claimed it."""
        auto.finished = True
        if not auto.claimed:
            auto.close()
            if self.auto.get(subscription_id) is auto:
                del self.auto[subscription_id]

    async def stream(self, subscription_id: str) -> AsyncGenerator[Event, None]:
        """The events a Subscribe(subscription_id) client gets; closes its bus subscription when the
        caller stops iterating (client gone, server closing)."""
        auto = self.auto.get(subscription_id)
        if auto is None and subscription_id and not self.is_environment(subscription_id):
            waiting = sum(1 for a in self.auto.values() if not a.env_id)
            if waiting >= MAX_WAITING:
                raise GRPCError(
                    Status.RESOURCE_EXHAUSTED,
                    f"{waiting} subscriptions already wait for an auto environment; "
                    "call NewAutoEnvironment with this id first",
                )
            auto = self.auto[subscription_id] = AutoSubscription(self.bus, "")
        if auto is not None and not auto.claimed:
            auto.claimed = True
            self.live.add(auto.subscription)
            try:
                async for event in auto.events():
                    yield event
            finally:
                self.live.discard(auto.subscription)
                auto.close()
                if self.auto.get(subscription_id) is auto:
                    del self.auto[subscription_id]
                if not auto.finished:
                    auto.abandoned.set()
            return
        subscription = self.bus.subscribe()
        self.live.add(subscription)
        try:
            async for event in subscription:
                if subscription_id and environment_id(event) != subscription_id:
                    continue
                yield event
                if subscription_id and is_destroyed(event, subscription_id):
                    return
        finally:
            self.live.discard(subscription)
            subscription.close()

    def close(self) -> None:
        """End every stream (server shutdown)."""
        for subscription in list(self.live):
            subscription.close()
        for auto in list(self.auto.values()):
            auto.close()
        self.auto.clear()
