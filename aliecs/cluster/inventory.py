"""Nodes of the local cluster: what each offers (attributes, cpu, memory, port ranges).

An inventory can be given in code or as YAML:

    nodes:
      - hostname: flp001
        attributes: {machine_id: flp001, machine_type: flp}
        detectors: [TPC]           # the detectors this node reads out (environments claim them)
        cpu: 8
        memory: 16384
        control_ports: 30000-30999
        data_ports: 20000-20999
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from aliecs.cluster.ports import PortRange

_DEFAULT_CONTROL_PORTS = PortRange(30000, 30999)
_DEFAULT_DATA_PORTS = PortRange(20000, 20999)


@dataclass(frozen=True)
class NodeSpec:
    hostname: str
    attributes: dict[str, str] = field(default_factory=dict)
    cpu: float = 64.0
    memory: float = 65536.0
    control_ports: PortRange = _DEFAULT_CONTROL_PORTS
    data_ports: PortRange = _DEFAULT_DATA_PORTS
    detectors: tuple[str, ...] = ()


class InventoryError(ValueError):
    pass


def default_nodes(count: int = 1) -> list[NodeSpec]:
    """`count` simulated nodes with disjoint port ranges (they all share this machine's ports)."""
    if count < 1:
        raise InventoryError(f"a local cluster needs at least one node, got {count}")
    block = min(1000, 10000 // count)
    nodes = []
    for index in range(count):
        hostname = "localhost" if count == 1 else f"node{index:02d}"
        nodes.append(
            NodeSpec(
                hostname=hostname,
                attributes={"machine_id": hostname},
                control_ports=PortRange(30000 + index * block, 30000 + (index + 1) * block - 1),
                data_ports=PortRange(20000 + index * block, 20000 + (index + 1) * block - 1),
            )
        )
    return nodes


def _node_from_mapping(entry: Any, where: str) -> NodeSpec:
    if not isinstance(entry, dict) or "hostname" not in entry:
        raise InventoryError(f"{where}: each node needs at least a 'hostname'")
    known = {"hostname", "attributes", "detectors", "cpu", "memory", "control_ports", "data_ports"}
    unknown = set(entry) - known
    if unknown:
        raise InventoryError(f"{where}: unknown node keys {sorted(unknown)} (known: {sorted(known)})")
    try:
        defaults = NodeSpec(hostname=str(entry["hostname"]))
        return NodeSpec(
            hostname=str(entry["hostname"]),
            attributes={str(k): str(v) for k, v in dict(entry.get("attributes") or {}).items()},
            cpu=float(entry.get("cpu", defaults.cpu)),
            memory=float(entry.get("memory", defaults.memory)),
            control_ports=PortRange.parse(str(entry["control_ports"]))
            if "control_ports" in entry
            else defaults.control_ports,
            data_ports=PortRange.parse(str(entry["data_ports"]))
            if "data_ports" in entry
            else defaults.data_ports,
            detectors=_detectors(entry.get("detectors"), where),
        )
    except ValueError as exc:
        raise InventoryError(f"{where}: {exc}") from exc


_DETECTOR = re.compile(r"[A-Z][A-Z0-9]{0,15}")


def _detectors(value: Any, where: str) -> tuple[str, ...]:
    """`[TPC, ITS]` or `TPC,ITS`: upper-case names of up to 16 characters (TPC, ITS, MFT, ...)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InventoryError(f"{where}: detectors must be a list of names, e.g. [TPC, ITS]")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    bad = [name for name in names if not _DETECTOR.fullmatch(name)]
    if bad:
        raise InventoryError(f"{where}: detector names are upper-case letters and digits, got {bad[:3]}")
    return names


def load_inventory(path: Path) -> list[NodeSpec]:
    try:
        document = YAML(typ="safe").load(path.read_text())
    except Exception as exc:
        raise InventoryError(f"{path}: cannot read inventory: {exc}") from exc
    entries = (document or {}).get("nodes") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InventoryError(f"{path}: expected a top-level 'nodes' list with at least one node")
    nodes = [_node_from_mapping(entry, f"{path}: nodes[{i}]") for i, entry in enumerate(entries)]
    names = [node.hostname for node in nodes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InventoryError(f"{path}: duplicate hostnames {duplicates}")
    return nodes
