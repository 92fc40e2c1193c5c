"""Agent resources as the master accounts them: scalars (cpus, mem, ...) and port ranges.

Scalars are kept to three decimals, as Mesos's fixed-point Value.Scalar does, so that offering 8 cpus
and launching eighty tasks of 0.1 adds up exactly. Ranges are kept as sets of values (an agent's 400
ports are cheap); every range is bounded to 0..65535. Roles and reservations are not modelled: every
resource is unreserved ("*") and `role` or `allocation_info` in a call is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.mesos_emulator.protocol import JSON, get_field, invalid

_MAX_RANGE_VALUE = 65535


@dataclass(frozen=True)
class Resources:
    scalars: dict[str, float] = field(default_factory=dict)
    ranges: dict[str, frozenset[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, cpus: float, mem: float, ports: tuple[int, int] | None = None) -> Resources:
        ranges = {"ports": frozenset(range(ports[0], ports[1] + 1))} if ports else {}
        return cls({"cpus": round(cpus, 3), "mem": round(mem, 3)}, ranges)

    @classmethod
    def parse(cls, items: Any, where: str) -> Resources:
        """Resources of a TaskInfo or ExecutorInfo (`where` names the field in error messages)."""
        if items is None:
            return cls()
        if not isinstance(items, list):
            raise invalid(f"'{where}' must be an array of Resource")
        scalars: dict[str, float] = {}
        ranges: dict[str, frozenset[int]] = {}
        for index, item in enumerate(items):
            path = f"{where}[{index}]."
            if not isinstance(item, dict):
                raise invalid(f"'{where}[{index}]' must be a Resource object")
            name = get_field(item, "name", str, path)
            kind = get_field(item, "type", str, path)
            if kind == "SCALAR":
                value = get_field(get_field(item, "scalar", dict, path), "value", float, f"{path}scalar.")
                if value < 0:
                    raise invalid(f"Resource '{name}' is negative ({value})")
                scalars[name] = round(scalars.get(name, 0.0) + value, 3)
            elif kind == "RANGES":
                spans = get_field(get_field(item, "ranges", dict, path), "range", list, f"{path}ranges.")
                values: set[int] = set(ranges.get(name, frozenset()))
                for span in spans:
                    if not isinstance(span, dict):
                        raise invalid(f"'{path}ranges.range' must hold Range objects")
                    begin = get_field(span, "begin", int, f"{path}ranges.range.")
                    end = get_field(span, "end", int, f"{path}ranges.range.")
                    if not 0 <= begin <= end <= _MAX_RANGE_VALUE:
                        raise invalid(f"Resource '{name}' has an invalid range [{begin}-{end}]")
                    values.update(range(begin, end + 1))
                ranges[name] = frozenset(values)
            else:
                raise invalid(f"Resource '{name}' of type {kind} is not supported (SCALAR and RANGES only)")
        return cls(scalars, ranges)

    def __add__(self, other: Resources) -> Resources:
        scalars = dict(self.scalars)
        for name, value in other.scalars.items():
            scalars[name] = round(scalars.get(name, 0.0) + value, 3)
        ranges = dict(self.ranges)
        for name, values in other.ranges.items():
            ranges[name] = ranges.get(name, frozenset()) | values
        return Resources(scalars, ranges)

    def __sub__(self, other: Resources) -> Resources:
        scalars = {
            name: round(value - other.scalars.get(name, 0.0), 3) for name, value in self.scalars.items()
        }
        ranges = {name: values - other.ranges.get(name, frozenset()) for name, values in self.ranges.items()}
        return Resources(scalars, ranges)

    def contains(self, other: Resources) -> bool:
        for name, value in other.scalars.items():
            if value > self.scalars.get(name, 0.0) + 1e-9:
                return False
        return all(values <= self.ranges.get(name, frozenset()) for name, values in other.ranges.items())

    def shortfall(self, other: Resources) -> str:
        """What of `other` is missing here, in words (for TASK_ERROR messages)."""
        missing = [
            f"{name} {value:g} (available {self.scalars.get(name, 0.0):g})"
            for name, value in other.scalars.items()
            if value > self.scalars.get(name, 0.0) + 1e-9
        ]
        for name, values in other.ranges.items():
            outside = sorted(values - self.ranges.get(name, frozenset()))
            if outside:
                missing.append(f"{name} {_spans(outside)[:5]}")
        return ", ".join(missing)

    def allocatable(self) -> bool:
        """Mesos's default min_allocatable_resources: cpus:0.01 or mem:32."""
        return self.scalars.get("cpus", 0.0) >= 0.01 or self.scalars.get("mem", 0.0) >= 32

    def to_json(self, role: str = "*") -> list[JSON]:
        items: list[JSON] = []
        for name, value in self.scalars.items():
            if value > 0:
                items.append(_resource(name, role, {"type": "SCALAR", "scalar": {"value": value}}))
        for name, values in self.ranges.items():
            if values:
                spans = [{"begin": begin, "end": end} for begin, end in _spans(sorted(values))]
                items.append(_resource(name, role, {"type": "RANGES", "ranges": {"range": spans}}))
        return items

    def summary(self) -> JSON:
        """A compact view for the admin API: scalars and ranges as [[begin, end], ...]."""
        return {
            **self.scalars,
            **{name: [list(span) for span in _spans(sorted(values))] for name, values in self.ranges.items()},
        }


def _resource(name: str, role: str, value: JSON) -> JSON:
    return {"name": name, **value, "role": "*", "allocation_info": {"role": role}}


def _spans(values: Iterable[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for value in values:
        if spans and spans[-1][1] == value - 1:
            spans[-1] = (spans[-1][0], value)
        else:
            spans.append((value, value))
    return spans
