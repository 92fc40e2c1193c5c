"""peanut's interactive mode (textual), driven through textual's test pilot against a real fake task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Button, RichLog, Static

from aliecs.cli.peanut_tui import UNREACHABLE, ConfigError, PeanutApp, flatten, load_config
from aliecs.testing import poll_until as until
from tests.occ_helpers import FakeTaskLauncher

pytestmark = pytest.mark.timeout(60)


def test_flatten_and_load_config(tmp_path: Path) -> None:
    assert flatten({"a": {"b": 1, "c": [True, None]}, "d": "x"}) == {
        "a.b": "1",
        "a.c.0": "True",
        "a.c.1": "",
        "d": "x",
    }
    (tmp_path / "c.json").write_text('{"chans": {"data": [{"address": "tcp://*:5555"}]}}')
    assert load_config(tmp_path / "c.json") == {"chans.data.0.address": "tcp://*:5555"}
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a map"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


async def test_buttons_drive_the_process_and_config_is_pushed_at_configure(tmp_path: Path) -> None:
    launcher = FakeTaskLauncher(tmp_path)
    record = tmp_path / "record.jsonl"
    config = tmp_path / "config.yaml"
    config.write_text("chans:\n  data:\n    - address: tcp://127.0.0.1:5555\nrate: 5\n")
    try:
        task = launcher.start("--record", str(record))
        await task.wait_serving()
        app = PeanutApp(task.client(), config=config, poll_seconds=0.1)
        async with app.run_test(size=(120, 30)) as pilot:
            await until(lambda: app.state == "STANDBY", "the first poll")
            status = app.query_one("#status", Static)
            assert "state: STANDBY" in str(status.render()) and "2 key(s)" in str(status.render())
            for button, state in (
                ("CONFIGURE", "CONFIGURED"),
                ("START", "RUNNING"),
                ("STOP", "CONFIGURED"),
                ("RESET", "STANDBY"),
            ):
                await pilot.click(f"#do-{button}")
                await until(lambda state=state: app.state == state, f"{button} to reach {state}")  # type: ignore[misc]
            await pilot.click("#do-EXIT")
            await until(lambda: app.state in ("DONE", UNREACHABLE), "EXIT")
            assert await task.wait_exit() == 0
            await until(lambda: app.state == UNREACHABLE, "the poll to notice the process is gone")
            lines = "\n".join(app.messages)
            assert "CONFIGURE with 2 argument(s): STANDBY -> CONFIGURED" in lines and "FAILED" not in lines
            await pilot.press("q")
        requests = [json.loads(line) for line in record.read_text().splitlines()]
        configure = next(r for r in requests if r["event"] == "CONFIGURE")
        assert configure["args"] == {"chans.data.0.address": "tcp://127.0.0.1:5555", "rate": "5"}
        assert all(r["args"] == {} for r in requests if r["event"] != "CONFIGURE")
    finally:
        launcher.kill_all()


async def test_allowed_buttons_keys_device_events_and_full_errors(tmp_path: Path) -> None:
    launcher = FakeTaskLauncher(tmp_path)
    try:
        task = launcher.start("--end-of-stream-after", "0", "--fail-on", "STOP")
        await task.wait_serving()
        app = PeanutApp(task.client(), poll_seconds=0.1)
        async with app.run_test(size=(60, 30)) as pilot:
            await until(lambda: app.state == "STANDBY" and app.events_subscribed, "the first poll")

            def enabled() -> set[str]:
                return {b.id.removeprefix("do-") for b in app.query(Button) if b.id and not b.disabled}

            assert enabled() == {"CONFIGURE", "EXIT"}
            await pilot.press("s")  # START is not possible from STANDBY: nothing is sent
            await until(lambda: "START is not possible from STANDBY" in app.messages, "the refusal")
            assert app.state == "STANDBY"
            await pilot.press("c")
            await until(lambda: app.state == "CONFIGURED", "CONFIGURE by key")
            assert enabled() == {"RESET", "START", "EXIT"}
            await pilot.press("s")
            await until(lambda: "device event: END_OF_STREAM" in app.messages, "the device event")
            assert enabled() == {"STOP"}
            await pilot.press("t")
            await until(lambda: app.state == "ERROR", "the failing STOP")
            (failed,) = [m for m in app.messages if m.startswith("STOP")]
            assert "fake failure in STOP (--fail-on)" in failed and len(failed) > 60
            # the log wraps it on a 60-column screen: every word is on screen, none cut off
            shown = " ".join(strip.text for strip in app.query_one("#log", RichLog).lines)
            assert "".join(failed.split()) in "".join(shown.split())
            assert enabled() == {"RECOVER", "EXIT"}
            await pilot.press("q")
    finally:
        launcher.kill_all()
