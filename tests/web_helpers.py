"""A real core with its web server on a free loopback port, for the REST and browser tests.

The workflow `shift` has public variables of the widget kinds the create form renders (an edit box,
a checkbox, a drop-down shown only when the checkbox is ticked, a field whose visibleif combines
&&, || and parentheses and which an enabledif can grey out) and real fake-task processes.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from aliecs.api import Core
from aliecs.pytest_plugin import isolated_nodes
from aliecs.web import WebServer
from aliecs.web.inputs import SESSION_HEADER
from tests.conftest import RepoBuilder

SHIFT = """\
name: !public shift
description: !public a readout chain of fake tasks
defaults:
  readouts: !public
    value: "2"
    type: number
    label: Readout tasks
    widget: editBox
    index: 1
  qc_enabled: !public
    value: "false"
    type: bool
    label: Quality control
    widget: checkBox
    index: 2
  qc_level: !public
    value: basic
    type: string
    label: QC level
    widget: dropDownBox
    values: [basic, full]
    visibleif: $$qc_enabled === "true"
    index: 3
  qc_histograms: !public
    value: "100"
    type: number
    label: Histograms
    widget: editBox
    visibleif: $$qc_enabled === "true" && ($$qc_level === "full" || $$qc_level === "expert")
    enabledif: $$readouts !== "1"
    index: 4
  readout_args: ""
roles:
  - name: "readout{{ it }}"
    for:
      begin: "1"
      end: "{{ readouts }}"
      var: it
    vars:
      fake_args: "{{ readout_args }}"
    task: {load: fake}
  - name: qc
    enabled: "{{ qc_enabled }}"
    task: {load: fake}
"""

HIDDEN = """\
name: hidden
roles:
  - name: only
    task: {load: fake}
"""


@asynccontextmanager
async def web_core(tmp_path: Path, repo: RepoBuilder, token: str | None = None) -> AsyncIterator[WebServer]:
    repo.workflow("shift", SHIFT).workflow("hidden", HIDDEN)
    async with Core.embedded(
        state_dir=tmp_path / "state", nodes=isolated_nodes(2), repository=repo.repository
    ) as core:
        server = WebServer(core, port=0, token=token)
        await server.start()
        try:
            yield server
        finally:
            await server.close()


class Operator:
    """One operator's HTTP client: a session of its own (the lock belongs to it) and a name."""

    def __init__(self, http: aiohttp.ClientSession, base: str, name: str) -> None:
        self.http, self.base, self.name = http, base.rstrip("/"), name
        self.session = secrets.token_hex(8)

    @property
    def headers(self) -> dict[str, str]:
        return {SESSION_HEADER: self.session}

    async def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        async with self.http.request(method, self.base + path, headers=self.headers, **kwargs) as response:
            body = await response.json()
            assert response.status == status, f"{method} {path}: {response.status} {body}"
            assert response.content_type == "application/json"
            return body

    async def create(self, workflow: str = "shift", status: int = 201, **vars: Any) -> Any:
        payload = {"workflow": workflow, "vars": vars, "operator": self.name}
        return await self.call("POST", "/api/environments", status, json=payload)

    async def transition(self, env_id: str, event: str, status: int = 200) -> Any:
        return await self.call(
            "POST", f"/api/environments/{env_id}/transition", status, json={"event": event}
        )

    async def lock(self, env_id: str, status: int = 200, force: bool = False) -> Any:
        payload = {"operator": self.name, "force": force}
        return await self.call("POST", f"/api/environments/{env_id}/lock", status, json=payload)
