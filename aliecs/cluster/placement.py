"""Matching task requests to nodes: constraints (strict AND) and wants (cpu, memory).

This is the pure decision, shared by every scheduler (the local cluster now, Mesos offers later).
The original's constraint check could let a later satisfied constraint hide an earlier failure;
here every constraint must hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Wants:
    cpu: float = 0.0
    memory: float = 0.0


@dataclass(frozen=True)
class PlacementRequest:
    task_id: str
    name: str
    wants: Wants = Wants()
    constraints: Mapping[str, str] = field(default_factory=dict)


@dataclass
class NodeCapacity:
    hostname: str
    attributes: Mapping[str, str]
    cpu_free: float
    memory_free: float


def constraints_hold(constraints: Mapping[str, str], attributes: Mapping[str, str]) -> bool:
    """Every constraint must match; an attribute holding 'a,b' matches a value equal to either."""
    for attribute, wanted in constraints.items():
        have = attributes.get(attribute)
        if have is None:
            return False
        if wanted != have and wanted not in [part.strip() for part in have.split(",")]:
            return False
    return True


def explain_mismatch(request: PlacementRequest, nodes: Iterable[NodeCapacity]) -> str:
    """One line saying why no node fits, for the operator."""
    reasons = []
    for node in nodes:
        if not constraints_hold(request.constraints, node.attributes):
            wanted = ", ".join(f"{k}={v}" for k, v in sorted(request.constraints.items()))
            reasons.append(f"{node.hostname}: constraints {wanted} not met")
        elif node.cpu_free < request.wants.cpu:
            reasons.append(f"{node.hostname}: needs {request.wants.cpu} cpu, {node.cpu_free:g} free")
        elif node.memory_free < request.wants.memory:
            reasons.append(f"{node.hostname}: needs {request.wants.memory} MB, {node.memory_free:g} free")
    return "; ".join(reasons) or "no nodes in the cluster"


def choose_node(request: PlacementRequest, nodes: list[NodeCapacity]) -> NodeCapacity | None:
    """The fitting node with the most free cpu (spreads load); deducts the request's wants from it."""
    best: NodeCapacity | None = None
    for node in nodes:
        if not constraints_hold(request.constraints, node.attributes):
            continue
        if node.cpu_free < request.wants.cpu or node.memory_free < request.wants.memory:
            continue
        if best is None or node.cpu_free > best.cpu_free:
            best = node
    if best is not None:
        best.cpu_free -= request.wants.cpu
        best.memory_free -= request.wants.memory
    return best
