"""The web page from the command line: `make gui` as a newcomer uses it (it prints the address;
Ctrl-C, SIGINT to the terminal's process group, stops everything, tasks included), and
`aliecs-core`'s --http-host/--http-port rules."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from aliecs.pytest_plugin import isolated_nodes
from tests.conftest import pid_alive

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent


async def test_make_gui_prints_the_address_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    nodes = isolated_nodes(2)  # port ranges away from other cores on this machine
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "nodes:\n"
        + "".join(
            f"  - hostname: {node.hostname}\n"
            f"    control_ports: {node.control_ports.first}-{node.control_ports.last}\n"
            f"    data_ports: {node.data_ports.first}-{node.data_ports.last}\n"
            for node in nodes
        )
    )
    args = f"--port 0 --state-dir {tmp_path / 'state'} --inventory {inventory}"
    process = await asyncio.create_subprocess_exec(
        "make",
        "-s",
        "gui",
        "GUI_PORT=0",
        f"GUI_ARGS={args}",
        f"BIN={Path(sys.executable).parent}",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any("web page and REST API at" in line for line in lines):
                raw = await process.stdout.readline()
                assert raw, f"make gui ended early: {lines}"
                lines.append(raw.decode().rstrip())
        match = re.search(r"at (http://127\.0\.0\.1:\d+/)", lines[-1])
        assert match, lines
        url = match.group(1)
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as page:
                assert page.status == 200 and "<title>aliecs</title>" in await page.text()
            created = await http.post(
                url + "api/environments",
                json={"workflow": "copypush", "vars": {"last_sink": "0"}, "operator": "newcomer"},
                headers={"X-Aliecs-Session": "make-gui-test"},
            )
            env = await created.json()
            assert created.status == 201, env
        pids = [task["pid"] for task in env["task_list"]]
        assert pids and all(pid_alive(pid) for pid in pids)

        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
        output = "\n".join(lines) + rest.decode()
        assert "SIGINT received, shutting down" in output and "stopped, no task left" in output, output
        assert not any(pid_alive(pid) for pid in pids)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def run_core(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "aliecs-core"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_web_page_off_loopback_needs_a_token_and_a_free_port(tmp_path: Path) -> None:
    code, out = await run_core("--state-dir", str(tmp_path / "a"), "--port", "0", "--http-host", "0.0.0.0")
    assert code == 2 and "refusing to listen on 0.0.0.0 without a token" in out, out
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = await run_core(
            "--state-dir", str(tmp_path / "b"), "--port", "0", "--http-port", str(port)
        )
    assert code == 1 and f"cannot listen on 127.0.0.1:{port} for the web page" in out, out
