"""Matching task requests against Mesos offers (aliecs.mesos.offers): pure decisions, no master."""

from __future__ import annotations

from typing import Any

import pytest

from aliecs.cluster.placement import PlacementRequest, Wants
from aliecs.cluster.scheduler_interface import ChannelRequest, DeployRequest
from aliecs.mesos.offers import EXECUTOR_CPUS, Match, Mismatch, Offer, OfferError, match_batch


def offer_json(
    number: int, cpus: float = 2.0, ports: tuple[int, int] = (61000, 61003), **attributes: str
) -> Any:
    return {
        "id": {"value": f"offer-{number}"},
        "agent_id": {"value": f"S{number}"},
        "hostname": f"agent-{number}",
        "url": {
            "scheme": "http",
            "address": {"hostname": f"agent-{number}", "ip": "127.0.0.1", "port": 5051},
        },
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}, "role": "*"},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 1024}, "role": "*"},
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": ports[0], "end": ports[1]}]}},
        ],
        "attributes": [
            {"name": "machine_id", "type": "TEXT", "text": {"value": f"agent-{number}"}},
            {"name": "slots", "type": "SCALAR", "scalar": {"value": 4}},
            *({"name": k, "type": "TEXT", "text": {"value": v}} for k, v in attributes.items()),
        ],
        "allocation_info": {"role": "*"},
    }


def request(task_id: str, cpu: float = 0.5, channels: int = 0, **constraints: str) -> DeployRequest:
    return DeployRequest(
        PlacementRequest(task_id, task_id, Wants(cpu=cpu, memory=10), constraints),
        channels=tuple(ChannelRequest(f"c{n}") for n in range(channels)),
    )


def test_an_offer_is_read_from_the_json_mapping() -> None:
    offer = Offer.from_json(offer_json(1, detector="TPC"))
    assert (offer.offer_id, offer.agent_id, offer.hostname, offer.address) == (
        "offer-1",
        "S1",
        "agent-1",
        "127.0.0.1",
    )
    assert offer.attributes == {"machine_id": "agent-1", "slots": "4", "detector": "TPC"}
    assert (offer.cpus, offer.mem, offer.ports) == (2.0, 1024.0, {61000, 61001, 61002, 61003})
    with pytest.raises(OfferError, match="offer without 'agent_id'"):
        Offer.from_json({"id": {"value": "x"}, "hostname": "h"})
    with pytest.raises(OfferError, match="invalid port range 70000-70001"):
        Offer.from_json(offer_json(2, ports=(70000, 70001)))


def test_ports_come_from_the_offer_and_the_first_task_carries_the_executor() -> None:
    offers = [Offer.from_json(offer_json(1)), Offer.from_json(offer_json(2, detector="TPC"))]
    first, second = match_batch(
        [request("a", channels=1, detector="TPC"), request("b", channels=0, detector="TPC")],
        offers,
        set(),
        {},
    )
    assert isinstance(first, Match) and isinstance(second, Match)
    assert first.offer is second.offer is offers[1]
    assert first.ports == (61000, 61001)  # control port, then the channel's
    assert second.ports == (61002,)
    assert first.with_executor and not second.with_executor
    assert offers[1].ports == {61003}
    assert offers[1].cpus == pytest.approx(2.0 - 0.5 - 0.5)  # the executor's share is set aside, not spent
    # Where the executor already runs, nothing is set aside for it.
    (third,) = match_batch([request("c", cpu=2.0)], [Offer.from_json(offer_json(3))], {"S3"}, {})
    assert isinstance(third, Match) and not third.with_executor


def test_a_mismatch_names_each_agent_and_what_failed() -> None:
    offers = [
        Offer.from_json(offer_json(1, cpus=1.0)),
        Offer.from_json(offer_json(2, cpus=1.0, ports=(61000, 61000))),
    ]
    known = {
        "agent-1": offers[0].attributes,
        "agent-2": offers[1].attributes,
        "agent-3": {"machine_id": "agent-3"},
    }
    too_big, no_ports, nowhere = match_batch(
        [request("big", cpu=1.0), request("ports", cpu=0.1, channels=4), request("x", detector="ITS")],
        offers,
        set(),
        known,
    )
    assert isinstance(too_big, Mismatch)
    assert f"agent-1: needs 1.0 cpu, {1.0 - EXECUTOR_CPUS:g} free" in too_big.reason
    assert "agent-3: no free resources offered" in too_big.reason
    assert isinstance(no_ports, Mismatch) and "agent-2: needs 5 free ports, 1 offered" in no_ports.reason
    assert isinstance(nowhere, Mismatch) and not nowhere.attributes_known
    assert nowhere.reason.startswith("no offer fits: ")
    for agent in ("agent-1", "agent-2", "agent-3"):
        assert f"{agent}: constraints detector=ITS not met" in nowhere.reason
    (none,) = match_batch([request("y")], [], set(), {})
    assert isinstance(none, Mismatch) and none.reason == "no offer fits: no offers from any agent"


def test_dynamic_ports_rotate_past_the_ones_handed_out_last() -> None:
    offer = Offer.from_json(offer_json(1))
    offer.next_port = 61002  # 61000 and 61001 were given last time: they may still be closing
    first, second = match_batch(
        [request("a", cpu=0.1), request("b", cpu=0.1, channels=1)], [offer], {"S1"}, {}
    )
    assert isinstance(first, Match) and isinstance(second, Match)
    assert first.ports == (61002,)
    assert second.ports == (61003, 61000)  # wraps around to the bottom of the range
    assert offer.next_port == 61001
