"""Configuration repositories in git: add/list/remove/refresh, defaults, revisions, listing.

Every test builds real git repositories with dulwich in a temporary directory (several commits,
branches and tags); nothing touches the network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aliecs.workflow.errors import TemplateError
from aliecs.workflow.repos import RepoManager, RepositoryError, identifier_of
from aliecs.workflow.repository import DirectoryRepository, default_repository
from aliecs.workflow.template import load_workflow
from tests.conftest import GitRepoBuilder

TASK = """\
name: {name}
control: {{mode: basic}}
wants: {{cpu: 0.1, memory: 1}}
command:
  value: "echo {name} {{{{ greeting }}}}"
"""

WORKFLOW_V1 = """\
name: !public hello
description: !public says hello
defaults:
  greeting: !public
    value: hi
    type: string
    label: Greeting
    widget: editBox
    panel: General
    index: 2
    values: [hi, hello]
    visibleif: $$x === "true"
  hidden:
    value: dropped
  plain: "1"
roles:
  - name: one
    task: {load: t1}
"""

WORKFLOW_V2 = (
    WORKFLOW_V1
    + """\
  - name: two
    task: {load: t1}
"""
)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[GitRepoBuilder]:
    builder = GitRepoBuilder(tmp_path / "upstream")
    builder.first = builder.commit(
        {"workflows/hello.yaml": WORKFLOW_V1, "tasks/t1.yaml": TASK.format(name="t1"), "jit/x": "o2-x"}, "v1"
    )
    builder.tag("v1")
    builder.branch("dev")
    builder.commit({"workflows/hello.yaml": WORKFLOW_V2, "tasks/t1.yaml": TASK.format(name="t1-v2")}, "v2")
    yield builder
    builder.close()


@pytest.fixture
def manager(tmp_path: Path) -> RepoManager:
    return RepoManager(tmp_path / "state")


def test_packaged_directory_is_the_default(manager: RepoManager) -> None:
    assert [info.kind for info in manager.list_repos()] == ["directory"]
    repository = manager.repository()
    assert isinstance(repository, DirectoryRepository)
    assert "copypush" in repository.list_workflows()
    assert load_workflow(repository, "copypush", {}).root.task_roles()


def test_add_read_revisions_and_persist(
    manager: RepoManager, upstream: GitRepoBuilder, tmp_path: Path
) -> None:
    info = manager.add(str(upstream.path))
    assert info.identifier == str(upstream.path.resolve())
    head = manager.repository(info.identifier)
    old = manager.repository(info.identifier, "v1")
    dev = manager.repository(info.identifier, "dev")
    # Different revisions are readable at once, from git objects (no working tree).
    assert len(load_workflow(head, "hello", {}).root.task_roles()) == 2
    assert len(load_workflow(old, "hello", {}).root.task_roles()) == 1
    assert len(load_workflow(dev, "hello", {}).root.task_roles()) == 1
    assert old.read_file("jit/x") == "o2-x"
    # Template references name the repository and the revision.
    repo, name = manager.resolve(f"{info.identifier}/workflows/hello@v1")
    assert name == "hello" and getattr(repo, "revision", "") == "v1"
    assert len(load_workflow(manager.repository(info.identifier), f"{info.identifier}/workflows/hello@v1", {},
                             resolver=manager.resolver).root.task_roles()) == 1  # fmt: skip
    # The state survives a new manager.
    again = RepoManager(tmp_path / "state")
    assert [i.identifier for i in again.list_repos()] == [i.identifier for i in manager.list_repos()]


def test_commit_hash_revision_and_identifiers(manager: RepoManager, upstream: GitRepoBuilder) -> None:
    info = manager.add(str(upstream.path))
    repo_v1 = manager.repository(info.identifier, "v1")
    commit = getattr(repo_v1, "commit", "")
    assert commit == upstream.first
    assert getattr(manager.repository(info.identifier, commit), "commit", "") == commit
    assert manager.repository(info.identifier, commit[:10]).list_workflows() == ["hello"]
    assert (
        identifier_of("https://github.com/AliceO2Group/ControlWorkflows.git")
        == "github.com/AliceO2Group/ControlWorkflows"
    )


def test_default_repository_and_revisions(manager: RepoManager, upstream: GitRepoBuilder) -> None:
    info = manager.add(str(upstream.path))
    manager.set_default(info.identifier)
    assert manager.resolve("hello")[0].name == info.identifier
    manager.set_default_revision(info.identifier, "dev")
    assert len(load_workflow(manager.repository(), "hello", {}).root.task_roles()) == 1
    manager.set_default_revision(info.identifier, "")
    manager.set_global_default_revision("v1")
    assert getattr(manager.repository(), "revision", "") == "v1"
    with pytest.raises(RepositoryError, match="has no revision 'nope'"):
        manager.set_default_revision(info.identifier, "nope")


def test_refresh_sees_new_commits(manager: RepoManager, upstream: GitRepoBuilder) -> None:
    info = manager.add(str(upstream.path))
    upstream.commit(
        {"workflows/later.yaml": "name: later\nroles:\n  - name: a\n    task: {load: t1}\n"}, "v3"
    )
    assert "later" not in manager.repository(info.identifier).list_workflows()
    manager.refresh()
    assert "later" in manager.repository(info.identifier).list_workflows()


def test_remove(manager: RepoManager, upstream: GitRepoBuilder) -> None:
    info = manager.add(str(upstream.path))
    manager.set_default(info.identifier)
    manager.remove(info.identifier)
    assert [i.kind for i in manager.list_repos()] == ["directory"]
    assert manager.default == default_repository().name
    assert not (manager.root / info.clone_dir).exists()


def test_templates_list_public_variables(manager: RepoManager, upstream: GitRepoBuilder) -> None:
    info = manager.add(str(upstream.path))
    (template,) = manager.templates(info.identifier, "v1")
    assert (template.name, template.public, template.description) == ("hello", True, "says hello")
    assert set(template.variables) == {"greeting"}
    spec = template.variables["greeting"]
    assert (spec.defaultValue, spec.label, spec.widget, spec.index) == ("hi", "Greeting", "editBox", 2)
    assert spec.allowedValues == ("hi", "hello") and spec.visibleIf == '$$x === "true"'


def test_bad_repositories_leave_nothing_behind(manager: RepoManager, tmp_path: Path) -> None:
    before = sorted(os.listdir(manager.root))
    with pytest.raises(RepositoryError, match="cannot fetch repository"):
        manager.add("file:///nonexistent/repo.git")
    empty = GitRepoBuilder(tmp_path / "norepo")
    empty.commit({"README": "x"}, "only a readme")
    with pytest.raises(RepositoryError, match="needs workflows/ and tasks/"):
        manager.add(str(empty.path))
    empty.close()
    assert sorted(os.listdir(manager.root)) == before
    assert len(manager.list_repos()) == 1
    with pytest.raises(RepositoryError, match="no repository 'nope'"):
        manager.repository("nope")


def test_unknown_revision_in_an_include(manager: RepoManager, upstream: GitRepoBuilder) -> None:
    info = manager.add(str(upstream.path))
    upstream.commit(
        {"workflows/outer.yaml": "name: outer\nroles:\n  - name: inner\n    include: hello@nope\n"}, "outer"
    )
    manager.refresh()
    with pytest.raises(
        TemplateError, match=r"outer.yaml@master:4: role outer.inner: .*has no revision 'nope'"
    ):
        load_workflow(manager.repository(info.identifier), "outer", {}, resolver=manager.resolver)


def test_include_across_repositories_and_revisions(
    manager: RepoManager, upstream: GitRepoBuilder, tmp_path: Path
) -> None:
    info = manager.add(str(upstream.path))
    ident = info.identifier
    other = GitRepoBuilder(tmp_path / "other")
    other.commit(
        {
            "workflows/top.yaml": f"""\
            name: top
            roles:
              - name: old
                include: {ident}/workflows/hello@v1
              - name: new
                include: {ident}/workflows/hello
              - name: own
                task: {{load: {ident}/tasks/t1@dev}}
            """,
            "tasks/unused.yaml": TASK.format(name="unused"),
        },
        "top",
    )
    other_info = manager.add(str(other.path))
    other.close()
    workflow = load_workflow(manager.repository(other_info.identifier), "top", {}, resolver=manager.resolver)
    paths = [role.path for role in workflow.root.task_roles()]
    # hello@v1 has one task, hello at the default revision (master) two; t1 comes from `dev`.
    assert paths == ["top.old.one", "top.new.one", "top.new.two", "top.own"]
    classes = {role.path: role.task.task_class.identifier for role in workflow.root.task_roles() if role.task}
    assert classes["top.old.one"] == f"{ident}/tasks/t1@{upstream.first}"
    assert classes["top.own"] == f"{ident}/tasks/t1@{upstream.first}"  # dev is still at v1
    commands = {
        role.path: role.task.task_class.render_command(
            role.task.task_class.stack_for(role.stack), role.path
        ).value
        for role in workflow.root.task_roles()
        if role.task and role.path != "top.own"
    }
    assert commands["top.old.one"] == "echo t1 hi"
    assert commands["top.new.one"] == "echo t1-v2 hi"


def test_cli_expands_a_git_repository_at_a_revision(upstream: GitRepoBuilder) -> None:
    from click.testing import CliRunner

    from aliecs.cli.coconut_template import expand

    runner = CliRunner()
    result = runner.invoke(expand, ["hello@v1", "--repo", str(upstream.path), "--json", "-e", "greeting=yo"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [task["command"] for task in document["tasks"]] == ["echo t1 yo"]
    head = runner.invoke(expand, ["hello", "--repo", str(upstream.path), "--json"])
    assert [task["path"] for task in json.loads(head.output)["tasks"]] == ["hello.one", "hello.two"]
    missing = runner.invoke(expand, ["hello@nope", "--repo", str(upstream.path)])
    assert missing.exit_code == 1 and "has no revision 'nope'" in missing.output


def test_local_providers_persist_in_the_state_directory(tmp_path: Path) -> None:
    from aliecs.workflow.providers import Providers

    (tmp_path / "inventory.yaml").write_text("hosts:\n  flp001: {detector: ITS, cards: {'1': ['0']}}\n")
    providers = Providers.local(tmp_path)
    providers.store.set("runtime/trg/x", "1")
    again = Providers.local(tmp_path)
    assert again.store.get("runtime/trg/x") == "1"
    assert again.inventory.detector_for_host("flp001") == "ITS"
    assert again.inventory.endpoints_for_cru_card("flp001", "1") == ["0"]
