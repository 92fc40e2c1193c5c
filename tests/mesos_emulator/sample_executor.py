"""A minimal Mesos v1 HTTP executor written from docs/executor-http-api.md alone, to test the
emulated agents independently of aliecs's own executor: `python -m tests.mesos_emulator.sample_executor`.

Every task it is given is "running" at once (TASK_RUNNING, `data` = the task's own data); KILL answers
TASK_KILLED, SHUTDOWN kills everything and exits. It prints each event type it receives to stdout
(in its sandbox) and keeps no state across restarts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import uuid
from typing import Any

import aiohttp


class SampleExecutor:
    def __init__(self) -> None:
        self.url = f"http://{os.environ['MESOS_AGENT_ENDPOINT']}/api/v1/executor"
        self.ids = {
            "framework_id": {"value": os.environ["MESOS_FRAMEWORK_ID"]},
            "executor_id": {"value": os.environ["MESOS_EXECUTOR_ID"]},
        }
        self.tasks: set[str] = set()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            self.session = session
            body = {**self.ids, "type": "SUBSCRIBE", "subscribe": {}}
            async with session.post(self.url, json=body, headers={"Accept": "application/json"}) as response:
                if response.status != 200:
                    sys.exit(f"SUBSCRIBE answered {response.status}: {await response.text()}")
                while True:
                    line = await response.content.readline()
                    if not line:
                        return  # the agent went away: without checkpointing, an executor exits
                    record = await response.content.readexactly(int(line))
                    if not await self.handle(json.loads(record)):
                        return

    async def handle(self, event: dict[str, Any]) -> bool:
        kind = event["type"]
        print(kind, flush=True)
        if kind == "LAUNCH":
            task = event["launch"]["task"]
            await self.update(task["task_id"]["value"], "TASK_RUNNING", task.get("data"))
        elif kind == "LAUNCH_GROUP":
            for task in event["launch_group"]["task_group"]["tasks"]:
                await self.update(task["task_id"]["value"], "TASK_RUNNING", task.get("data"))
        elif kind == "KILL":
            await self.update(event["kill"]["task_id"]["value"], "TASK_KILLED")
        elif kind == "MESSAGE":
            await self.call({"type": "MESSAGE", "message": {"data": event["message"]["data"]}})
        elif kind == "SHUTDOWN":
            for task_id in sorted(self.tasks):
                await self.update(task_id, "TASK_KILLED")
            return False
        return True

    async def update(self, task_id: str, state: str, data: str | None = None) -> None:
        status: dict[str, Any] = {
            "task_id": {"value": task_id},
            "state": state,
            "source": "SOURCE_EXECUTOR",
            "uuid": base64.b64encode(uuid.uuid4().bytes).decode(),
        }
        if data is not None:
            status["data"] = data
        if state == "TASK_RUNNING":
            self.tasks.add(task_id)
        else:
            self.tasks.discard(task_id)
        await self.call({"type": "UPDATE", "update": {"status": status}})

    async def call(self, body: dict[str, Any]) -> None:
        async with self.session.post(self.url, json={**self.ids, **body}) as response:
            if response.status != 202:
                print(f"{body['type']} answered {response.status}: {await response.text()}", flush=True)


if __name__ == "__main__":
    asyncio.run(SampleExecutor().run())
