"""`wants.ports` end to end: static ports decide placement and stay reserved while a task lives.

All simulated nodes share this machine, so two tasks wanting the same static port cannot both be
placed even on different nodes; destroying an environment gives its ports back. The reservations
belong to a core's cluster, not to the process: two embedded cores keep separate books.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from aliecs import Core, TransitionError
from aliecs.cluster.ports import port_bindable
from aliecs.testing import isolated_nodes
from tests.conftest import FAKE_TASK, RepoBuilder

pytestmark = pytest.mark.usefixtures("no_leaked_processes")

PAIR = """\
name: pair
roles:
  - name: first
    task: {load: first}
  - name: second
    task: {load: second}
"""

SINGLE = """\
name: single
roles:
  - name: only
    task: {load: first}
"""

SECOND_ALONE = SINGLE.replace("single", "second_alone").replace("load: first", "load: second")


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free now, picked at random below Linux's ephemeral range (32768 and
    up), where the core's own outgoing connections could take them during the test, and away from
    the ranges the nodes allocate from (`isolated_nodes`: 10000-19999; defaults: 20000-21999)."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(24000, 30000)
        if port not in ports and port_bindable(port):
            ports.append(port)
    return ports


def wanting(ports: str) -> str:
    """The fake task's descriptor with `wants.ports` added."""
    return FAKE_TASK.replace("  memory: 1\n", f'  memory: 1\n  ports: "{ports}"\n')


def pair_repo(repo: RepoBuilder, first: str, second: str) -> RepoBuilder:
    return (
        repo.task("first", wanting(first))
        .task("second", wanting(second))
        .workflow("pair", PAIR)
        .workflow("single", SINGLE)
        .workflow("second_alone", SECOND_ALONE)
    )


async def test_two_tasks_wanting_the_same_port_cannot_deploy(tmp_path: Path, repo: RepoBuilder) -> None:
    (port,) = free_ports(1)
    pair_repo(repo, str(port), f"{port},{port}")
    async with Core.embedded(
        state_dir=tmp_path / "state", nodes=isolated_nodes(2), repository=repo.repository
    ) as core:
        with pytest.raises(TransitionError) as caught:
            await core.new_environment("pair")
        error = caught.value
        assert error.event == "DEPLOY"
        (task_error,) = error.task_errors
        assert task_error.name == "pair.second"
        assert f"undeployable: no node fits: node00: wanted port {port} is not free" in task_error.message
        assert f"node01: wanted port {port} is not free" in task_error.message
        assert await core.environments() == []
        # The first task's reservation went with the failed deployment: it deploys alone now.
        single = await core.new_environment("single")
        assert single.state == "DEPLOYED"
        await single.destroy()


async def test_distinct_ports_deploy_and_destroy_releases_them(tmp_path: Path, repo: RepoBuilder) -> None:
    low, high, other = sorted(free_ports(3))
    pair_repo(repo, f"{low}", f"{high},{other}")
    async with Core.embedded(
        state_dir=tmp_path / "state", nodes=isolated_nodes(2), repository=repo.repository
    ) as core:
        env = await core.new_environment("pair")
        assert env.state == "DEPLOYED"
        with pytest.raises(TransitionError, match=f"wanted port {low} is not free"):
            await core.new_environment("single")  # wants `low`, which `pair` holds
        with pytest.raises(TransitionError, match=f"wanted port {high} is not free"):
            await core.new_environment("second_alone")  # wants `high` and `other`

        await env.destroy()
        for workflow in ("single", "second_alone"):
            alone = await core.new_environment(workflow)
            assert alone.state == "DEPLOYED"
            await alone.destroy()


async def test_two_cores_in_one_process_keep_separate_reservations(tmp_path: Path, repo: RepoBuilder) -> None:
    """The embedded API used twice: each core's cluster has its own book, so both may place a task
    wanting the same static port (the fake task never binds it), while within one core the second
    reservation still fails."""
    (port,) = free_ports(1)
    pair_repo(repo, str(port), str(port))
    ours_node, their_node = isolated_nodes(2)  # disjoint dynamic ranges: only the static port is shared
    first = Core.embedded(state_dir=tmp_path / "one", nodes=[ours_node], repository=repo.repository)
    second = Core.embedded(state_dir=tmp_path / "two", nodes=[their_node], repository=repo.repository)
    async with first, second:
        ours = await first.new_environment("single")
        theirs = await second.new_environment("single")
        assert ours.state == theirs.state == "DEPLOYED"
        with pytest.raises(TransitionError, match=f"wanted port {port} is not free"):
            await first.new_environment("second_alone")


async def test_bad_port_expression_names_the_descriptor(tmp_path: Path, repo: RepoBuilder) -> None:
    pair_repo(repo, "29010-29000", "29020")
    async with Core.embedded(
        state_dir=tmp_path / "state", nodes=isolated_nodes(1), repository=repo.repository
    ) as core:
        with pytest.raises(TransitionError) as caught:
            await core.new_environment("pair")
        (task_error,) = caught.value.task_errors
        assert "tasks/first" in task_error.message and "wants.ports '29010-29000'" in task_error.message
