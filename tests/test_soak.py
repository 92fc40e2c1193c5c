"""A core that runs for months: destroyed environments leave nothing behind; the soak bench's arithmetic."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from actors.fake_executor import FakeExecutorActor
from aliecs import Core, model
from bench.soak import slope, warmup_cycles
from tests.conftest import RepoBuilder
from tests.fakefarm_helpers import fake_nodes, farm_repo

ONE_FAKE = """\
name: solo
roles:
  - name: only
    task: {load: fake}
"""


@pytest.mark.usefixtures("no_leaked_processes")
async def test_destroyed_environment_graph_is_freed_without_an_explicit_collection(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    # The environment's actors, records and state machines form reference cycles and are frozen
    # (gc.freeze) while it lives: only a full collection after its release frees them, and CPython
    # never starts one by itself here. Before the fix every destroyed environment stayed in memory.
    repo.workflow("solo", ONE_FAKE)
    async with Core.embedded(state_dir=tmp_path / "state", repository=repo.repository) as core:
        graphs = []
        for _ in range(2):
            env = await core.new_environment("solo")
            await env.transition("CONFIGURE")
            actor = env._ref.proxy()._actor  # the environment actor: the root of its object graph
            graphs.append(weakref.ref(actor))
            del actor
            await env.destroy()
            assert graphs[-1]() is None, "the destroyed environment's actor is still in memory"
        # The handle stays usable after destroy (its record is plain data, not the actor graph).
        assert env.state == "DONE" and [r.event for r in env.history][-1] == "EXIT"
        # Nothing else is left frozen out of the collector's sight but what lives on.
        assert gc.get_freeze_count() > 0


def test_slope_is_the_growth_per_step() -> None:
    assert slope([5.0, 5.0, 5.0, 5.0]) == 0.0
    assert slope([10.0, 13.0, 16.0, 19.0]) == pytest.approx(3.0)
    # A sawtooth that returns to its start has a small slope compared with its amplitude.
    assert abs(slope([0.0, 100.0, 0.0, 100.0, 0.0])) < 20
    assert slope([7.0]) == 0.0 and slope([]) == 0.0


def test_warmup_is_a_fifth_of_the_run_but_never_the_whole_of_it() -> None:
    assert warmup_cycles(1000) == 200
    assert warmup_cycles(10) == 2
    assert warmup_cycles(3) == 1
    assert warmup_cycles(2) == 0 and warmup_cycles(1) == 0


def test_environment_history_keeps_the_latest_transitions_up_to_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(model, "HISTORY_LIMIT", 3)
    record = model.EnvironmentRecord(id="e", workflow="w", created_ms=0, user_vars={})
    for number in range(1, 6):
        record.history.append(
            model.TransitionResult("START_ACTIVITY", "CONFIGURED", "RUNNING", 0, 0.1, number)
        )
    assert [result.run_number for result in record.history] == [3, 4, 5]


async def test_destroyed_environment_leaves_its_tasks_out_of_the_full_collection(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    # The full collection after a destroy stalls the event loop for as long as it works: its
    # per-task objects (refs, mailboxes, entries) are dropped a slice at a time before it, so it
    # frees only the environment's own cycles, not several objects per task (~170 ms at 10,000).
    tasks = 400
    farm_repo(repo, "many", good=tasks, bad=0)
    full_collections: list[int] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full_collections.append(info["collected"])

    async with Core.embedded(
        state_dir=tmp_path / "state",
        nodes=fake_nodes(),
        repository=repo.repository,
        executor_class=FakeExecutorActor,
    ) as core:
        env = await core.new_environment("many")
        await env.transition("CONFIGURE")
        gc.callbacks.append(on_gc)
        try:
            await env.destroy()
        finally:
            gc.callbacks.remove(on_gc)
    assert full_collections, "no full collection after the destroy"
    assert max(full_collections) < tasks, f"the full collection freed {max(full_collections)} objects"
