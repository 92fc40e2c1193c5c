"""Mesos offers as the scheduler sees them, and matching a batch of task requests against them.

An offer (mesos.proto `Offer`, JSON mapping) is one agent's free resources: `cpus` and `mem`
scalars, `ports` ranges, and the agent's attributes. Matching uses the same decision as the local
cluster (`aliecs.cluster.placement`: strict constraints, then cpu and memory, most free cpu first),
with the ports of a task (its static `wants.ports`, its control port, one per TCP channel) taken
from the offer's port ranges instead of a configured node range.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aliecs.cluster.placement import NodeCapacity, choose_node, constraints_hold, explain_mismatch
from aliecs.cluster.scheduler_interface import DeployRequest

# What our executor takes on each agent (ExecutorInfo.resources), besides its tasks.
EXECUTOR_CPUS = 0.1
EXECUTOR_MEM = 32.0


class OfferError(ValueError):
    """An offer the master sent that we cannot read."""


def _text(attribute: Mapping[str, Any]) -> str:
    """An attribute's value as text (TEXT, SCALAR, RANGES and SET attributes)."""
    kind = attribute.get("type")
    if kind == "TEXT":
        return str((attribute.get("text") or {}).get("value", ""))
    if kind == "SCALAR":
        return f"{(attribute.get('scalar') or {}).get('value', 0):g}"
    if kind == "SET":
        return ",".join((attribute.get("set") or {}).get("item", []))
    if kind == "RANGES":
        spans = (attribute.get("ranges") or {}).get("range", [])
        return ",".join(f"[{span['begin']}-{span['end']}]" for span in spans)
    return ""


@dataclass
class Offer:
    offer_id: str
    agent_id: str
    hostname: str
    address: str  # how tasks on other agents reach this one's ports
    attributes: dict[str, str]
    cpus: float
    mem: float
    ports: set[int]
    role: str = "*"
    # Tasks placed on this offer and not launched yet (ACCEPT uses it for them).
    tasks: list[str] = field(default_factory=list)
    # The batch that holds the offer (None: free for any batch).
    holder: int | None = None
    # Whether the executor's own resources were set aside from this offer already.
    executor_reserved: bool = False
    # Dynamic ports are handed out from here upwards (then wrapping around): a port just given back
    # may still be held by a process that is shutting down, so the next ones are taken first.
    next_port: int = 0

    @classmethod
    def from_json(cls, offer: Mapping[str, Any]) -> Offer:
        try:
            offer_id = offer["id"]["value"]
            agent_id = offer["agent_id"]["value"]
            hostname = offer["hostname"]
        except (KeyError, TypeError) as exc:
            raise OfferError(f"offer without {exc}: {str(offer)[:200]}") from None
        address = ((offer.get("url") or {}).get("address") or {}).get("ip") or hostname
        cpus = mem = 0.0
        ports: set[int] = set()
        for resource in offer.get("resources", []):
            name = resource.get("name")
            if name in ("cpus", "mem") and resource.get("type") == "SCALAR":
                value = float((resource.get("scalar") or {}).get("value", 0.0))
                if name == "cpus":
                    cpus += value
                else:
                    mem += value
            elif name == "ports" and resource.get("type") == "RANGES":
                for span in (resource.get("ranges") or {}).get("range", []):
                    begin, end = int(span["begin"]), int(span["end"])
                    if not 0 < begin <= end < 65536:
                        raise OfferError(f"offer {offer_id}: invalid port range {begin}-{end}")
                    ports.update(range(begin, end + 1))
        attributes = {attribute["name"]: _text(attribute) for attribute in offer.get("attributes", [])}
        role = (offer.get("allocation_info") or {}).get("role", "*")
        return cls(offer_id, agent_id, hostname, address, attributes, cpus, mem, ports, role)


def ports_needed(request: DeployRequest) -> int:
    """Dynamic ports a task takes: its control port (controllable tasks) and one per TCP channel."""
    return int(request.controllable) + sum(channel.addressing != "ipc" for channel in request.channels)


@dataclass(frozen=True)
class Match:
    task_id: str
    offer: Offer
    ports: tuple[int, ...]  # dynamic ports, in order: control port first (if any), then channels
    static_ports: tuple[int, ...]
    cpus: float
    mem: float
    with_executor: bool  # the executor's resources come from this offer with this task


@dataclass(frozen=True)
class Mismatch:
    task_id: str
    reason: str
    # False when no agent ever offered has the wanted attributes (another try cannot help... unless
    # a new agent joins, which the retries still allow for).
    attributes_known: bool


def match_batch(
    requests: Iterable[DeployRequest],
    offers: list[Offer],
    executor_running: set[str],
    known_attributes: Mapping[str, Mapping[str, str]],
) -> list[Match | Mismatch]:
    """Match each request to one of `offers` (deducting what it takes), in order.

    `executor_running` holds the agents (ids) where our executor runs or is being launched: on the
    others the first task also carries the executor's resources. `known_attributes` (agent hostname
    -> attributes) of every agent seen so far words the failure of a task no current offer fits.
    """
    results: list[Match | Mismatch] = []
    capacities = [(offer, _capacity(offer, executor_running)) for offer in offers]
    offer_of = {id(capacity): offer for offer, capacity in capacities}
    for request in requests:
        wanted = request.placement
        count = ports_needed(request)
        candidates, short = [], []
        for offer, capacity in capacities:
            free = len(offer.ports.difference(wanted.static_ports))
            if free >= count:
                candidates.append(capacity)
            else:
                short.append(f"{offer.hostname}: needs {count} free ports, {free} offered")
        chosen = choose_node(wanted, candidates)
        if chosen is None:
            results.append(_mismatch(request, candidates, short, known_attributes))
            continue
        offer = offer_of[id(chosen)]
        with_executor = offer.agent_id not in executor_running and not offer.executor_reserved
        offer.cpus -= wanted.wants.cpu
        offer.mem -= wanted.wants.memory
        if with_executor:
            offer.executor_reserved = True
        offer.ports.difference_update(wanted.static_ports)
        ordered = sorted(offer.ports)
        split = bisect.bisect_left(ordered, offer.next_port)
        dynamic = tuple((ordered[split:] + ordered[:split])[:count])
        offer.ports.difference_update(dynamic)
        if dynamic:
            offer.next_port = dynamic[-1] + 1
        results.append(
            Match(
                wanted.task_id,
                offer,
                dynamic,
                tuple(wanted.static_ports),
                wanted.wants.cpu,
                wanted.wants.memory,
                with_executor,
            )
        )
    return results


def _capacity(offer: Offer, executor_running: set[str]) -> NodeCapacity:
    """What the offer has left for tasks (the executor's share set aside where it is not running)."""
    executor_share = offer.agent_id not in executor_running and not offer.executor_reserved
    return NodeCapacity(
        offer.hostname,
        offer.attributes,
        offer.cpus - (EXECUTOR_CPUS if executor_share else 0.0),
        offer.mem - (EXECUTOR_MEM if executor_share else 0.0),
        port_free=offer.ports.__contains__,
    )


def _mismatch(
    request: DeployRequest,
    capacities: list[NodeCapacity],
    short: list[str],
    known_attributes: Mapping[str, Mapping[str, str]],
) -> Mismatch:
    wanted = request.placement
    offered = {capacity.hostname for capacity in capacities} | {line.split(":")[0] for line in short}
    reasons = list(short)
    if capacities:
        reasons.append(explain_mismatch(wanted, capacities))
    for hostname, attributes in sorted(known_attributes.items()):
        if hostname in offered:
            continue
        if not constraints_hold(wanted.constraints, attributes):
            constraints = ", ".join(f"{k}={v}" for k, v in sorted(wanted.constraints.items()))
            reasons.append(f"{hostname}: constraints {constraints} not met")
        else:
            reasons.append(f"{hostname}: no free resources offered")
    reason = "; ".join(reasons) if reasons else "no offers from any agent"
    known = any(constraints_hold(wanted.constraints, attributes) for attributes in known_attributes.values())
    return Mismatch(wanted.task_id, f"no offer fits: {reason}", known)
