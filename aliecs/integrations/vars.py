"""Reading the call's variables the way the original's plugins do, with errors that name the variable."""

from __future__ import annotations

import json
import time

from aliecs.integrations.base import CallContext, IntegrationError

MAX_DETECTORS = 64
MAX_PARAMETERS = 256


def detector_list(call: CallContext, name: str, default: str = "[]") -> list[str]:
    """A JSON list of detector names (`trg_detectors: '["TPC", "ITS"]'`)."""
    text = call.var(name, default) or default
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise IntegrationError(f"{name}: not a JSON list of detectors ({exc})") from exc
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise IntegrationError(f"{name}: not a JSON list of detector names")
    if len(value) > MAX_DETECTORS:
        raise IntegrationError(f"{name}: {len(value)} detectors, at most {MAX_DETECTORS}")
    return [item.strip() for item in value]


def string_map(call: CallContext, name: str) -> dict[str, str]:
    """A JSON object of strings (`dcs_sor_parameters: '{"key": "value"}'`); absent is empty."""
    text = call.var(name, "") or "{}"
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise IntegrationError(f"{name}: not a JSON object ({exc})") from exc
    if not isinstance(value, dict) or len(value) > MAX_PARAMETERS:
        raise IntegrationError(f"{name}: not a JSON object of at most {MAX_PARAMETERS} keys")
    return {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in value.items()}


def run_number(call: CallContext, end_of_run: bool = False) -> int:
    """The run number; at end of run also the last one (`run_number` is gone once the tasks stopped)."""
    text = call.var("run_number") or (call.var("last_run_number") if end_of_run else "")
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 0 < number < 2**31:
        raise IntegrationError(
            "no run number: this call must run during a run (START_ACTIVITY at weight >= 0, or STOP_ACTIVITY)"
        )
    return number


def now_ms() -> int:
    return int(time.time() * 1000)
