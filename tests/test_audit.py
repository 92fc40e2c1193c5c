"""Issue 11: the audit log survives a torn last line and a full disk without losing or breaking lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aliecs.events import EnvironmentEvent, EventBus
from aliecs.generated import o2control as pb
from aliecs.server.audit import AUDIT_FILE, AuditLog
from aliecs.testing import poll_until as until
from tests.control_harness import Harness, harness

pytestmark = pytest.mark.timeout(60)

__all__ = ["harness"]


def records(path: Path) -> list[dict[str, object]]:
    """Every line, each of which must be a whole JSON object."""
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_torn_last_line_is_isolated_at_start(tmp_path: Path) -> None:
    path = tmp_path / AUDIT_FILE
    good = '{"timestamp":"1"}\n{"timestamp":"2"}\n'
    path.write_text(good + '{"timestamp":"3","environmentEv')
    bus = EventBus()
    audit = AuditLog(bus, path)
    await audit.start()
    bus.publish(EnvironmentEvent("env1", "DEPLOYED"))
    await audit.stop()
    lines = records(path)
    assert len(lines) == 3 and lines[2]["environmentEvent"]["environmentId"] == "env1"  # type: ignore[index]
    assert (tmp_path / f"{AUDIT_FILE}.torn").read_text() == '{"timestamp":"3","environmentEv\n'
    assert path.stat().st_mode & 0o777 == 0o600


async def test_full_disk_is_reported_and_writing_resumes(harness: Harness) -> None:
    audit = harness.server.audit
    path = audit.path
    await audit.stop()
    path.unlink()
    path.symlink_to("/dev/full")  # every write fails with ENOSPC, like a full disk
    await audit.start()
    harness.core.events.publish(EnvironmentEvent("full1", "DEPLOYED"))
    await until(lambda: audit.write_errors > 0, "a write error")
    info = await harness.stub.get_framework_info(pb.GetFrameworkInfoRequest())
    assert info.state.startswith("DEGRADED") and "No space left on device" in info.state, info.state
    harness.core.events.publish(EnvironmentEvent("full2", "DEPLOYED"))
    path.unlink()  # space returns: the next retry opens a fresh file
    await until(lambda: audit.failing is None and audit.written >= 2, "writing to resume")
    assert (await harness.stub.get_framework_info(pb.GetFrameworkInfoRequest())).state == "CONNECTED"
    await audit.stop()
    ids = [r.get("environmentEvent", {}).get("environmentId") for r in records(path)]  # type: ignore[union-attr]
    assert ids[:2] == ["full1", "full2"], ids
    assert not os.path.islink(path) and path.stat().st_mode & 0o777 == 0o600
    await audit.start()
