"""Workflow template expansion (the spine's subset): roles, iterators, variables, channels, errors."""

from __future__ import annotations

import pytest

from aliecs.errors import UnknownWorkflowError
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.repository import default_repository
from aliecs.workflow.template import load_workflow
from tests.conftest import RepoBuilder


def test_packaged_copypush_expands() -> None:
    workflow = load_workflow(default_repository(), "copypush", {})
    tasks = workflow.root.task_roles()
    assert [role.path for role in tasks] == [
        "copypush.sink0",
        "copypush.sink1",
        "copypush.sink2",
        "copypush.sampler",
    ]
    sink = tasks[0]
    assert sink.task is not None and sink.task.task_class.name == "copypush-sink"
    assert [(c.name, c.type, c.target) for c in sink.connect] == [("data", "pull", "copypush.sampler:data")]
    sampler_class = tasks[-1].task.task_class  # type: ignore[union-attr]
    assert [c.name for c in sampler_class.bind] == ["data"]


def test_user_vars_override_defaults_and_drive_iterators() -> None:
    workflow = load_workflow(default_repository(), "copypush", {"last_sink": "4", "msg_rate": "10"})
    assert len(workflow.root.task_roles()) == 6
    assert workflow.root.stack["msg_rate"] == "10"


def test_rendered_command(repo: RepoBuilder) -> None:
    repo.workflow(
        "one",
        """\
        name: one
        defaults:
          fake_args: "--latency-all 0.1"
        roles:
          - name: "w{{ i }}"
            for: {begin: "1", end: "2", var: i}
            vars:
              fake_args: "{{ fake_args + ' --log-level ' + (i == '1' ? 'DEBUG' : 'INFO') }}"
            task: {load: fake}
        """,
    )
    workflow = load_workflow(repo.repository, "one", {})
    commands = []
    for role in workflow.root.task_roles():
        assert role.task is not None
        stack = role.task.task_class.stack_for(role.stack)
        commands.append(role.task.task_class.render_command(stack, role.path).value)
    assert commands == [
        "exec aliecs-fake-task --latency-all 0.1 --log-level DEBUG",
        "exec aliecs-fake-task --latency-all 0.1 --log-level INFO",
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("roles:\n  - name: a\n    tusk: {load: fake}\n", r"role one: a role needs exactly one of"),
        ("roles:\n  - name: a\n    task: {load: fake}\n    colour: red\n", r"unknown keys \['colour'\]"),
        ("roles:\n  - name: '{{ nope }}'\n    task: {load: fake}\n", r"unknown name \"nope\""),
        ("roles:\n  - name: a\n    task: {load: missing}\n", r"role one.a: no task named 'missing'"),
        (
            "roles:\n  - name: 'x{{ i }}'\n    for: {begin: a, end: '2', var: i}\n    task: {load: fake}\n",
            r"for.begin/end must be integers",
        ),
        ("roles:\n  - name: a\n    for: {range: '[1]', var: i}\n    task: {load: fake}\n", r"must use the"),
        ("roles: [\n", r"one.yaml:\d+:\d+"),
    ],
)
def test_bad_templates_name_file_and_role(repo: RepoBuilder, body: str, message: str) -> None:
    repo.workflow("one", "name: one\n" + body)
    with pytest.raises(TemplateError, match=message) as caught:
        load_workflow(repo.repository, "one", {})
    assert "one.yaml" in str(caught.value)


def test_root_name_must_match_file(repo: RepoBuilder) -> None:
    repo.workflow("one", "name: two\nroles: []\n")
    with pytest.raises(TemplateError, match="root role's name 'two' must equal the file name 'one'"):
        load_workflow(repo.repository, "one", {})


def test_unknown_workflow(repo: RepoBuilder) -> None:
    with pytest.raises(UnknownWorkflowError, match="no workflow named 'ghost'"):
        load_workflow(repo.repository, "ghost", {})
