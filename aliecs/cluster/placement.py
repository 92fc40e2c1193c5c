"""Matching task requests to nodes: constraints (strict AND) and wants (cpu, memory, static ports).

This is the pure decision, shared by every scheduler (the local cluster now, Mesos offers later).
The original's constraint check could let a later satisfied constraint hide an earlier failure;
here every constraint must hold. Whether a port is free is the scheduler's knowledge, so each node
carries a predicate for it; reserving the ports of the chosen node is the scheduler's job too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field


def _any_port_free(_port: int) -> bool:
    return True


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
    # wants.ports, expanded once (see `ports.parse_port_list`): each must be free on the chosen node.
    static_ports: tuple[int, ...] = ()


@dataclass
class NodeCapacity:
    hostname: str
    attributes: Mapping[str, str]
    cpu_free: float
    memory_free: float
    # Whether a static port is free on this node now; the default (a node without port knowledge)
    # accepts any, so callers that only care about cpu and memory need not supply one.
    port_free: Callable[[int], bool] = _any_port_free

    def taken_port(self, ports: Iterable[int]) -> int | None:
        """The first of `ports` that is not free here, or None when all are."""
        return next((port for port in ports if not self.port_free(port)), None)


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
        elif (port := node.taken_port(request.static_ports)) is not None:
            reasons.append(f"{node.hostname}: wanted port {port} is not free")
    return "; ".join(reasons) or "no nodes in the cluster"


def choose_node(request: PlacementRequest, nodes: list[NodeCapacity]) -> NodeCapacity | None:
    """The fitting node with the most free cpu (spreads load); deducts the request's cpu and memory
    from it. Static ports are checked but not reserved: the caller owns the port bookkeeping."""
    best: NodeCapacity | None = None
    for node in nodes:
        if not constraints_hold(request.constraints, node.attributes):
            continue
        if node.cpu_free < request.wants.cpu or node.memory_free < request.wants.memory:
            continue
        if best is not None and node.cpu_free <= best.cpu_free:
            continue  # would not be chosen anyway: skip the (system-call) port check
        if node.taken_port(request.static_ports) is not None:
            continue
        best = node
    if best is not None:
        best.cpu_free -= request.wants.cpu
        best.memory_free -= request.wants.memory
    return best
