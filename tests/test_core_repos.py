"""Configuration repositories in the running core (`Core.repos`, `Core.new_environment`).

Real git repositories made with dulwich in temporary directories (no network), real task processes:
the revision an environment was made from shows in its task's command line.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from aliecs.api import Core
from aliecs.testing import isolated_nodes
from aliecs.workflow.repos import (
    RepositoryError,
    RepositoryFetchError,
    UnknownRepositoryError,
    UnknownRevisionError,
)
from tests.conftest import GitRepoBuilder, RepoBuilder, process_args

pytestmark = [pytest.mark.usefixtures("no_leaked_processes"), pytest.mark.timeout(60)]


async def test_two_revisions_of_one_repository_run_side_by_side(
    tmp_path: Path, repo: RepoBuilder, versioned_repo: GitRepoBuilder
) -> None:
    # A pinned repository (`repository=`) still serves plain names; qualified ones go to core.repos.
    async with Core.embedded(
        state_dir=tmp_path / "state", nodes=isolated_nodes(), repository=repo.repository
    ) as core:
        info = await asyncio.to_thread(core.repos.add, str(versioned_repo.path))
        old, new = await asyncio.gather(
            core.new_environment(f"{info.identifier}/workflows/solo@v1"),
            core.new_environment(f"{info.identifier}/workflows/solo"),
        )
        await asyncio.gather(old.transition("CONFIGURE"), new.transition("CONFIGURE"))
        await new.transition("START_ACTIVITY")
        (old_task,), (new_task,) = old.tasks, new.tasks
        assert process_args(old_task.pid)[-2:] == ["--log-level", "INFO"]
        assert process_args(new_task.pid)[-2:] == ["--log-level", "WARNING"]
        assert (old.state, new.state) == ("CONFIGURED", "RUNNING")
        assert old.template is not None and old.template.public
        await asyncio.gather(old.destroy(), new.destroy())


async def test_default_repository_and_revision_resolve_plain_names(
    tmp_path: Path, versioned_repo: GitRepoBuilder
) -> None:
    state = tmp_path / "state"
    async with Core.embedded(state_dir=state, nodes=isolated_nodes()) as core:
        assert core.repository is None
        assert [i.identifier for i in core.repos.list_repos()] == ["aliecs/templates"]
        info = await asyncio.to_thread(core.repos.add, str(versioned_repo.path))
        await asyncio.to_thread(core.repos.set_default, info.identifier)
        await asyncio.to_thread(core.repos.set_default_revision, info.identifier, "v1")
        env = await core.new_environment("solo")  # default repository at its default revision
        pinned = await core.new_environment("solo@master")
        assert process_args(env.tasks[0].pid)[-1] == "INFO"
        assert process_args(pinned.tasks[0].pid)[-1] == "WARNING"
        await asyncio.gather(env.destroy(), pinned.destroy())
    # The choices persist in the state directory.
    again = Core.embedded(state_dir=state).repos
    assert again.default == info.identifier and again.default_revision() == "v1"


async def test_bad_references_create_nothing(
    tmp_path: Path, repo: RepoBuilder, versioned_repo: GitRepoBuilder
) -> None:
    async with Core.embedded(
        state_dir=tmp_path / "state", nodes=isolated_nodes(), repository=repo.repository
    ) as core:
        info = await asyncio.to_thread(core.repos.add, str(versioned_repo.path))
        ident = info.identifier
        with pytest.raises(UnknownRepositoryError, match=r"^no repository 'nowhere/x' \(configured: "):
            await core.new_environment("nowhere/x/workflows/solo")
        with pytest.raises(UnknownRevisionError, match=f"^repository {ident} has no revision 'v9'$"):
            await core.new_environment(f"{ident}/workflows/solo@v9")
        with pytest.raises(RepositoryError, match=r"expected \[repo/workflows/\]name\[@revision\]"):
            await core.new_environment("a/b")
        assert await core.environments() == [] and core.tasks() == []

        before = sorted(os.listdir(core.repos.root))
        listed = core.repos.list_repos()
        with pytest.raises(RepositoryFetchError, match=r"^cannot fetch repository file:///nonexistent"):
            await asyncio.to_thread(core.repos.add, "file:///nonexistent/repo.git")
        other = GitRepoBuilder(tmp_path / "other")
        other.commit({"workflows/solo.yaml": "name: solo\n", "tasks/fake.yaml": "name: fake\n"}, "one")
        with pytest.raises(UnknownRevisionError, match="has no revision 'nope'"):
            await asyncio.to_thread(core.repos.add, str(other.path), "nope")
        other.close()
        assert sorted(os.listdir(core.repos.root)) == before and core.repos.list_repos() == listed
