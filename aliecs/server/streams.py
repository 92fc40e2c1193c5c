"""Event fan-out for Subscribe: filters per subscriber, and buffers for auto-environments.

A NewAutoEnvironment client names a subscription id and calls Subscribe(id), possibly after the
environment has already started: events of that environment are buffered under the id from the
moment the environment is created, so the subscriber sees the whole cycle; the stream ends when the
cycle is over. Subscribe with an environment id streams that environment's events until it is
destroyed; Subscribe with an empty id streams everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from aliecs.events import EnvironmentEvent, Event, EventBus, Subscription
from aliecs.server.events import environment_id

DESTROY = "DESTROY"


def is_destroyed(event: Event, env_id: str) -> bool:
    """The last event of an environment: its DESTROY transition finished (well or not)."""
    return (
        isinstance(event, EnvironmentEvent)
        and event.environment_id == env_id
        and event.transition == DESTROY
        and event.transition_status in ("DONE_OK", "DONE_ERROR")
    )


class AutoSubscription:
    """Events of one auto-environment, buffered until its subscriber reads them.

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
            if environment_id(event) != self.env_id:
                continue
            yield event
            if is_destroyed(event, self.env_id):
                self.finished = True
                return

    def close(self) -> None:
        self.subscription.close()


class Streams:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.auto: dict[str, AutoSubscription] = {}
        self.live: set[Subscription] = set()

    def register_auto(self, subscription_id: str, env_id: str) -> AutoSubscription:
        auto = AutoSubscription(self.bus, env_id)
        self.auto[subscription_id] = auto
        return auto

    async def stream(self, subscription_id: str) -> AsyncGenerator[Event, None]:
        """The events a Subscribe(subscription_id) client gets; closes its bus subscription when the
        caller stops iterating (client gone, server closing)."""
        auto = self.auto.get(subscription_id)
        if auto is not None and not auto.claimed:
            auto.claimed = True
            self.live.add(auto.subscription)
            try:
                async for event in auto.events():
                    yield event
            finally:
                self.live.discard(auto.subscription)
                auto.close()
                self.auto.pop(subscription_id, None)
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
