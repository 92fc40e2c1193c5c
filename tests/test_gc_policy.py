"""The freeze of long-lived objects (`actors.gc_policy`): process-wide by nature, per core in its
bookkeeping; a destroy frees the destroyed environment and leaves every other one frozen."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

from actors.fake_executor import FakeExecutorActor
from actors.gc_policy import GcPolicy
from aliecs import Core, Environment
from aliecs.testing import isolated_nodes
from tests.conftest import RepoBuilder

ONE_FAKE = """\
name: solo
roles:
  - name: only
    task: {load: fake}
"""


class Cycle:
    """Garbage only the cyclic collector can free."""

    def __init__(self) -> None:
        self.me = self


def frozen(item: object) -> bool:
    """Tracked by the collector but in none of its generations: in the permanent (frozen) one."""
    return gc.is_tracked(item) and all(other is not item for other in gc.get_objects())


def test_a_policy_collects_only_after_its_own_release() -> None:
    mine, other = GcPolicy(), GcPolicy()
    garbage = Cycle()
    freed = weakref.ref(garbage)
    survivor = Cycle()
    mine.settle()
    del garbage
    # A release alone leaves everything frozen (nothing is handed back while the environment winds down).
    mine.release()
    assert freed() is not None and frozen(survivor)
    # Another core's collection is not due: it does not collect on this one's behalf (nor clear its due).
    assert other.collect_released() == 0
    assert freed() is not None and mine.due
    # The core's own collection frees the released garbage, then freezes what lives again.
    assert mine.collect_released() > 0
    assert freed() is None
    assert frozen(survivor)
    assert mine.collect_released() == 0  # once per release


def environment_actor(env: Environment) -> Any:
    return env._ref.proxy()._actor  # the root of the environment's object graph


async def test_destroying_one_environment_leaves_the_others_frozen(tmp_path: Path, repo: RepoBuilder) -> None:
    repo.workflow("solo", ONE_FAKE)

    def embedded(name: str) -> Core:
        # The fake executor binds no port, but placement probes them: away from other suites' tasks.
        return Core.embedded(
            state_dir=tmp_path / name,
            nodes=isolated_nodes(),
            repository=repo.repository,
            executor_class=FakeExecutorActor,
        )

    async with embedded("one") as one, embedded("two") as two:
        assert one.gc_policy is not two.gc_policy
        doomed = await one.new_environment("solo")
        kept = await one.new_environment("solo")
        elsewhere = await two.new_environment("solo")
        for env in (doomed, kept, elsewhere):
            await env.transition("CONFIGURE")
        doomed_actor = weakref.ref(environment_actor(doomed))
        survivors = [environment_actor(kept), environment_actor(elsewhere)]
        assert all(frozen(actor) for actor in survivors)
        await doomed.destroy()
        assert doomed_actor() is None, "the destroyed environment's actor is still in memory"
        # The collection that freed it unfroze every object of the process, then froze the
        # survivors again: both cores' other environments are out of the collector's sight.
        assert all(frozen(actor) for actor in survivors)
        assert not one.gc_policy.due and not two.gc_policy.due
