"""The README's other examples run as written: the Python harness example and the OCC device."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aliecs.occ import OccClient
from tests.doc_examples import ROOT, blocks, write_files
from tests.occ_helpers import free_port, wait_for_state

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(120)]


def test_the_python_example_runs(tmp_path: Path) -> None:
    (example,) = [
        b
        for b in blocks(ROOT / "README.md")
        if b.language == "python" and not b.file and "new_environment" in b.body
    ]
    assert "Core.embedded" in example.body and "nodes=2" in example.body
    # Other test runs share this machine and the default port ranges: the example's two nodes get
    # port blocks of their own (the only change to the text as written).
    body = "from aliecs.testing import isolated_nodes\n" + example.body.replace(
        "nodes=2", "nodes=isolated_nodes(2)"
    )
    result = subprocess.run(
        [sys.executable, "-c", body], cwd=tmp_path, capture_output=True, text=True, timeout=100
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " RUNNING " in result.stdout and "copypush.sink5" in result.stdout, result.stdout


async def test_the_occ_device_example_is_controllable(tmp_path: Path) -> None:
    (device,) = write_files([b for b in blocks(ROOT / "README.md") if b.file == "device.py"], tmp_path)
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(device), env={**os.environ, "OCC_CONTROL_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with OccClient("127.0.0.1", port, timeout=5) as client:
            await wait_for_state(client, "STANDBY", 30)
            for source, event, args in (
                ("STANDBY", "CONFIGURE", {"chans.data.0.address": "tcp://127.0.0.1:5555"}),
                ("CONFIGURED", "START", {"runNumber": "7"}),
                ("RUNNING", "STOP", {}),
                ("CONFIGURED", "EXIT", {}),
            ):
                result = await client.transition(source, event, args)
                assert result.ok, (event, result)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
