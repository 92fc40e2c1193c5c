"""A Mesos framework in a few raw aiohttp calls, written from docs/scheduler-http-api.md alone (its own
RecordIO reading, no aliecs code): what someone else's framework does, to test the emulator and our
executor without our scheduler adapter."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

DEADLINE = 20.0


class RawFramework:
    """A scheduler speaking the v1 HTTP API directly."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url.rstrip("/") + "/api/v1/scheduler"
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.backlog: list[dict[str, Any]] = []
        self.seen_uuids: set[str] = set()
        self.stream_id = ""
        self.framework_id = ""
        self._reader: asyncio.Task[None] | None = None
        self._response: aiohttp.ClientResponse | None = None
        self.ended = asyncio.Event()

    async def subscribe(self, **info: Any) -> dict[str, Any]:
        framework_info = {"user": "tester", "name": "raw framework", **info}
        body: dict[str, Any] = {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info}}
        if "id" in info:
            body["framework_id"] = info["id"]
        response = await self.session.post(self.url, json=body, headers={"Accept": "application/json"})
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "application/json"
        self.stream_id = response.headers["Mesos-Stream-Id"]
        self._response = response
        self.ended.clear()
        self._reader = asyncio.ensure_future(self._read(response))
        first = await self.next("SUBSCRIBED", "ERROR")
        if first["type"] == "SUBSCRIBED":
            self.framework_id = first["subscribed"]["framework_id"]["value"]
        return first

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        try:
            while True:
                line = await response.content.readline()
                if not line:
                    break
                record = await response.content.readexactly(int(line))
                await self.events.put(json.loads(record))
        except (aiohttp.ClientError, asyncio.IncompleteReadError):
            pass
        finally:
            self.ended.set()

    async def next(self, *kinds: str) -> dict[str, Any]:
        """The first event of one of `kinds` within the deadline; other events stay for later calls
        (heartbeats are dropped unless asked for)."""
        for index, kept in enumerate(self.backlog):
            if kept["type"] in kinds:
                return self.backlog.pop(index)
        async with asyncio.timeout(DEADLINE):
            while True:
                received = await self.events.get()
                if received["type"] in kinds:
                    return received
                if received["type"] != "HEARTBEAT":
                    self.backlog.append(received)

    async def next_update(self, task_id: str) -> dict[str, Any]:
        """The next status update of one task (other events stay for later calls). Retries of an
        update already returned (the agent re-sends what is not acknowledged yet) are skipped."""
        while True:
            status = await self._next_update(task_id)
            uuid = status.get("uuid")
            if uuid is None or uuid not in self.seen_uuids:
                if uuid is not None:
                    self.seen_uuids.add(uuid)
                return status

    async def _next_update(self, task_id: str) -> dict[str, Any]:
        for index, kept in enumerate(self.backlog):
            if kept["type"] == "UPDATE" and kept["update"]["status"]["task_id"]["value"] == task_id:
                return dict(self.backlog.pop(index)["update"]["status"])
        async with asyncio.timeout(DEADLINE):
            while True:
                received = await self.events.get()
                status = received.get("update", {}).get("status", {})
                if received["type"] == "UPDATE" and status["task_id"]["value"] == task_id:
                    return dict(status)
                if received["type"] != "HEARTBEAT":
                    self.backlog.append(received)

    async def outstanding_offers(self, hostname: str) -> list[dict[str, Any]]:
        """Every offer of one agent received so far and not yet used, waiting for one if there is none."""
        found: list[dict[str, Any]] = []
        while not self.events.empty():
            self.backlog.append(self.events.get_nowait())
        rescinded = {e["rescind"]["offer_id"]["value"] for e in self.backlog if e["type"] == "RESCIND"}
        self.backlog = [e for e in self.backlog if e["type"] != "RESCIND"]
        for kept in list(self.backlog):
            if kept["type"] == "OFFERS":
                mine = [
                    o
                    for o in kept["offers"]["offers"]
                    if o["hostname"] == hostname and o["id"]["value"] not in rescinded
                ]
                found.extend(mine)
                kept["offers"]["offers"] = [o for o in kept["offers"]["offers"] if o["hostname"] != hostname]
                if not kept["offers"]["offers"]:
                    self.backlog.remove(kept)
        while not found:
            received = await self.next("OFFERS")
            found = [o for o in received["offers"]["offers"] if o["hostname"] == hostname]
        return found

    async def offers_from(self, count: int) -> dict[str, dict[str, Any]]:
        """Offers until `count` different agents offered; hostname -> latest offer."""
        offers: dict[str, dict[str, Any]] = {}
        while len(offers) < count:
            received = await self.next("OFFERS")
            for offer in received["offers"]["offers"]:
                offers[offer["hostname"]] = offer
        return offers

    async def call(self, kind: str, stream_id: str | None = None, **member: Any) -> aiohttp.ClientResponse:
        body = {"framework_id": {"value": self.framework_id}, "type": kind, **member}
        headers = {"Mesos-Stream-Id": self.stream_id if stream_id is None else stream_id}
        if stream_id == "":
            headers = {}
        async with self.session.post(self.url, json=body, headers=headers) as response:
            await response.read()
            return response

    async def acknowledge(self, status: dict[str, Any]) -> None:
        member = {"agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]}
        assert (await self.call("ACKNOWLEDGE", acknowledge=member)).status == 202

    async def close(self) -> None:
        if self._response is not None:
            self._response.close()
        if self._reader is not None:
            await asyncio.wait_for(self.ended.wait(), DEADLINE)
