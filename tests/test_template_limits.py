"""Issue 11: template expansion is bounded (iterator size, roles per environment, YAML aliases and
nesting), each limit named with the file and line in the error, and raised by an environment variable."""

from __future__ import annotations

import pytest
from grpclib.const import Status

from aliecs.generated import o2control as pb
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.repository import default_repository
from aliecs.workflow.template import load_workflow
from tests.conftest import RepoBuilder
from tests.control_harness import Harness, answered_meanwhile, expect_status, harness

pytestmark = pytest.mark.timeout(60)

__all__ = ["harness"]

LOOP = """\
name: loop
defaults:
  n: "3"
roles:
  - name: "r{{ i }}"
    for:
      begin: "1"
      end: "{{ n }}"
      var: i
    task: {load: fake}
"""

LAUGHS = "name: laughs\nroles: []\nx0: &x0 [a, a, a, a, a, a, a, a, a, a]\n" + "".join(
    f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]\n" for i in range(1, 9)
)


def test_iterator_size_is_bounded_with_file_line_and_limit(repo: RepoBuilder) -> None:
    repo.workflow("loop", LOOP)
    assert len(load_workflow(repo.repository, "loop", {"n": "5"}).tasks()) == 5
    with pytest.raises(TemplateError) as caught:
        load_workflow(repo.repository, "loop", {"n": "1000000"})
    message = str(caught.value)
    assert "loop.yaml:8" in message and "1000000 roles" in message and "limit of 4096" in message
    assert "ALIECS_MAX_FOR_ITEMS" in message and len(message) < 400
    with pytest.raises(TemplateError, match="limit of 4096"):
        load_workflow(default_repository(), "copypush", {"last_sink": "9999"})


def test_limits_are_configurable(repo: RepoBuilder, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.workflow("loop", LOOP)
    monkeypatch.setenv("ALIECS_MAX_FOR_ITEMS", "2")
    with pytest.raises(TemplateError, match="limit of 2 per iterator"):
        load_workflow(repo.repository, "loop", {})
    monkeypatch.setenv("ALIECS_MAX_FOR_ITEMS", "10")
    monkeypatch.setenv("ALIECS_MAX_ROLES", "3")  # the root and three iterations are four roles
    with pytest.raises(TemplateError, match="more than 3 roles") as caught:
        load_workflow(repo.repository, "loop", {})
    assert "ALIECS_MAX_ROLES" in str(caught.value)
    monkeypatch.setenv("ALIECS_MAX_ROLES", "4")
    assert len(load_workflow(repo.repository, "loop", {}).tasks()) == 3


def test_billion_laughs_is_refused(repo: RepoBuilder) -> None:
    repo.workflow("laughs", LAUGHS)
    assert len(LAUGHS) < 1000
    with pytest.raises(TemplateError) as caught:
        load_workflow(repo.repository, "laughs", {})
    message = str(caught.value)
    assert "laughs.yaml:" in message and "200000 nodes" in message and "ALIECS_MAX_YAML_NODES" in message


@pytest.mark.parametrize("flow", [True, False])
def test_deep_yaml_is_a_template_error(repo: RepoBuilder, flow: bool) -> None:
    if flow:
        text = "name: deep\nroles: []\nx: " + "[" * 10_000 + "]" * 10_000 + "\n"
    else:
        text = (
            "name: deep\nroles: []\n" + "".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "v\n"
        )
    repo.workflow("deep", text)
    assert len(text) >= 20_000
    with pytest.raises(TemplateError) as caught:
        load_workflow(repo.repository, "deep", {})
    message = str(caught.value)
    assert "deep.yaml:" in message and "deeper than 100 levels" in message, message


async def test_bad_templates_over_grpc_are_invalid_argument(harness: Harness, repo: RepoBuilder) -> None:
    repo.workflow("loop", LOOP).workflow("laughs", LAUGHS)
    for workflow, variables, fragment in (
        ("loop", {"n": "1000000"}, "limit of 4096"),
        ("laughs", {}, "ALIECS_MAX_YAML_NODES"),
    ):
        await answered_meanwhile(
            harness,
            expect_status(
                harness.stub.new_environment(
                    pb.NewEnvironmentRequest(workflow_template=workflow, vars=variables)
                ),
                Status.INVALID_ARGUMENT,
                fragment,
            ),
        )
    assert await harness.core.environments() == []
