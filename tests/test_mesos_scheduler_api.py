"""The Mesos v1 scheduler HTTP API client against a tiny master written here (aiohttp on loopback).

The master records every call; tests drive what it answers (redirects, silence instead of heartbeats,
an ERROR event) and check what the client sends and does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from aliecs.mesos.recordio import encode
from aliecs.mesos.scheduler_api import (
    MesosCallError,
    SchedulerClient,
    SubscriptionError,
    scheduler_url,
)
from aliecs.testing import poll_until

FRAMEWORK = {"user": "aliecs", "name": "test", "failover_timeout": 60.0}


class TinyMaster:
    """Just enough of a master: SUBSCRIBE streams SUBSCRIBED then whatever `events` holds."""

    def __init__(self, heartbeat: float = 0.05) -> None:
        self.heartbeat = heartbeat
        self.calls: list[tuple[dict[str, Any], str | None]] = []
        self.subscribes: list[dict[str, Any]] = []
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.redirect_to: str | None = None
        self.silent = False  # stream no heartbeats
        self.end_stream = False  # end the current subscription's stream
        self.streams = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.redirect_to is not None:
            return web.Response(status=307, headers={"Location": self.redirect_to})
        body = await request.json()
        if body["type"] != "SUBSCRIBE":
            self.calls.append((body, request.headers.get("Mesos-Stream-Id")))
            if request.headers.get("Mesos-Stream-Id") != f"stream-{self.streams}":
                return web.Response(status=400, text="wrong Mesos-Stream-Id")
            return web.Response(status=202)
        assert "Mesos-Stream-Id" not in request.headers
        self.subscribes.append(body)
        self.streams += 1
        response = web.StreamResponse(headers={"Mesos-Stream-Id": f"stream-{self.streams}"})
        await response.prepare(request)
        framework_id = (body["subscribe"]["framework_info"].get("id") or {}).get("value", "fw-1")
        subscribed = {
            "type": "SUBSCRIBED",
            "subscribed": {
                "framework_id": {"value": framework_id},
                "heartbeat_interval_seconds": self.heartbeat,
            },
        }
        await response.write(encode(json.dumps(subscribed).encode()))
        stream = self.streams
        while stream == self.streams:  # a newer subscription replaces this one, as in Mesos
            if self.end_stream:
                self.end_stream = False
                break
            try:
                event = await asyncio.wait_for(self.events.get(), self.heartbeat)
            except TimeoutError:
                if self.silent:
                    continue
                event = {"type": "HEARTBEAT"}
            data = encode(json.dumps(event).encode())
            try:
                await response.write(data[:3])  # re-chunked at an odd place, as a proxy may
                await response.write(data[3:])
            except ConnectionError:
                break
        return response


@pytest.fixture
async def master() -> AsyncIterator[tuple[TinyMaster, str]]:
    tiny = TinyMaster()
    app = web.Application()
    app.router.add_post("/api/v1/scheduler", tiny.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield tiny, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def test_scheduler_url_forms() -> None:
    assert scheduler_url("http://m:5050") == "http://m:5050/api/v1/scheduler"
    assert scheduler_url("m:5050") == "http://m:5050/api/v1/scheduler"
    assert scheduler_url("//m:5050/api/v1/scheduler") == "http://m:5050/api/v1/scheduler"
    with pytest.raises(ValueError, match="expected http://HOST:PORT"):
        scheduler_url("ftp://m:5050")


async def test_subscribe_events_and_calls_carry_the_stream_id(master: tuple[TinyMaster, str]) -> None:
    tiny, url = master
    events: list[dict[str, Any]] = []
    subscribed: list[str] = []

    async def on_event(event: dict[str, Any]) -> None:
        events.append(event)

    async def on_subscribed(framework_id: str) -> None:
        subscribed.append(framework_id)

    client = SchedulerClient(url, FRAMEWORK, on_event, on_subscribed)
    with pytest.raises(MesosCallError, match="not subscribed"):
        await client.revive()
    client.start()
    try:
        await client.wait_subscribed(10.0)
        assert client.framework_id == "fw-1" and subscribed == ["fw-1"]
        assert tiny.subscribes[0]["subscribe"]["framework_info"]["name"] == "test"
        offer = {"type": "OFFERS", "offers": [{"id": {"value": "o1"}, "hostname": "a"}]}
        await tiny.events.put(offer)
        await poll_until(lambda: offer in events, "the offer to reach the client", 10.0)
        await client.decline(["o1"], 5.0)
        await client.acknowledge("agent-1", "t1", "dXVpZA==")
        await client.reconcile([("t1", "agent-1")])
        await client.teardown()
        (decline, stream), *_ = tiny.calls
        assert stream == "stream-1"
        assert decline == {
            "framework_id": {"value": "fw-1"},
            "type": "DECLINE",
            "decline": {"offer_ids": [{"value": "o1"}], "filters": {"refuse_seconds": 5.0}},
        }
        kinds = [call["type"] for call, _ in tiny.calls]
        assert kinds == ["DECLINE", "ACKNOWLEDGE", "RECONCILE", "TEARDOWN"]
        assert tiny.calls[1][0]["acknowledge"]["uuid"] == "dXVpZA=="
        assert tiny.calls[2][0]["reconcile"] == {
            "tasks": [{"task_id": {"value": "t1"}, "agent_id": {"value": "agent-1"}}]
        }
    finally:
        await client.close()


async def test_missed_heartbeats_and_a_closed_stream_resubscribe_with_the_framework_id(
    master: tuple[TinyMaster, str],
) -> None:
    tiny, url = master

    async def ignore(_event: dict[str, Any]) -> None:
        pass

    client = SchedulerClient(url, FRAMEWORK, ignore, missed_heartbeats=3, backoff_initial=0.01)
    client.start()
    try:
        await client.wait_subscribed(10.0)
        tiny.silent = True  # no heartbeat: the client must give up on this stream
        await poll_until(lambda: tiny.streams >= 2, "a second subscription", 10.0)
        tiny.silent = False
        tiny.end_stream = True  # the master closes the stream
        await poll_until(lambda: tiny.streams >= 3, "a third subscription", 10.0)
        await client.wait_subscribed(10.0)
        assert all(s["framework_id"] == {"value": "fw-1"} for s in tiny.subscribes[1:])
        assert all(s["subscribe"]["framework_info"]["id"] == {"value": "fw-1"} for s in tiny.subscribes[1:])
        await client.suppress()
        assert tiny.calls[-1][1] == f"stream-{tiny.streams}"  # the new stream's id
    finally:
        await client.close()


async def test_redirect_to_the_leading_master_is_followed(master: tuple[TinyMaster, str]) -> None:
    leader, leader_url = master
    follower = TinyMaster()
    follower.redirect_to = "//" + leader_url.removeprefix("http://") + "/api/v1/scheduler"
    app = web.Application()
    app.router.add_post("/api/v1/scheduler", follower.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def ignore(_event: dict[str, Any]) -> None:
        pass

    client = SchedulerClient(f"127.0.0.1:{port}", FRAMEWORK, ignore)
    client.start()
    try:
        await client.wait_subscribed(10.0)
        assert client.url == f"{leader_url}/api/v1/scheduler"
        await client.revive()
        assert [call["type"] for call, _ in leader.calls] == ["REVIVE"]
    finally:
        await client.close()
        await runner.cleanup()


async def test_an_error_event_ends_the_subscription_with_its_message(master: tuple[TinyMaster, str]) -> None:
    tiny, url = master
    seen: list[dict[str, Any]] = []

    async def on_event(event: dict[str, Any]) -> None:
        seen.append(event)

    client = SchedulerClient(url, FRAMEWORK, on_event, backoff_initial=5.0)
    client.start()
    try:
        await client.wait_subscribed(10.0)
        await tiny.events.put({"type": "ERROR", "error": {"message": "Framework has been removed"}})
        await poll_until(lambda: not client.subscribed, "the client to drop its subscription", 10.0)
        assert seen[-1]["type"] == "ERROR"
        assert "Framework has been removed" in client.last_error
        with pytest.raises(SubscriptionError, match="Framework has been removed"):
            await client.wait_subscribed(0.01)
    finally:
        await client.close()
