"""The pytest plugin, used the way a detector team would: fixtures from the entry point."""

from __future__ import annotations

import pytest

from aliecs.api import Core
from aliecs.testing import wait_for_environment_state, wait_for_task_states
from aliecs.workflow.repository import TemplateRepository
from tests.conftest import RepoBuilder

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(60)]


@pytest.fixture
def aliecs_repository(repo: RepoBuilder) -> TemplateRepository:
    repo.workflow(
        "eos",
        """\
        name: eos
        roles:
          - name: readout
            vars: {fake_args: "--end-of-stream-after 0.2"}
            task: {load: fake}
        """,
    )
    return repo.repository


async def test_core_fixture_and_waits(aliecs_core: Core) -> None:
    env = await aliecs_core.new_environment("eos")
    await env.transition("CONFIGURE")
    await wait_for_task_states(aliecs_core, env, "CONFIGURED", names=["readout"], timeout=5)
    await env.transition("START_ACTIVITY")
    await wait_for_environment_state(aliecs_core, env, "CONFIGURED", timeout=20)  # stopped by END_OF_STREAM
    with pytest.raises(AssertionError, match=r"environment .* to be RUNNING .*\(it is CONFIGURED\)"):
        await wait_for_environment_state(aliecs_core, env, "RUNNING", timeout=0.2)
