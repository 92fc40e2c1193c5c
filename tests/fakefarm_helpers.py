"""Workflows of many farm tasks and the nodes to run them on: shared by the fake task farm, the
in-process fake executor and the soak tests."""

from __future__ import annotations

from aliecs.cluster.inventory import NodeSpec
from aliecs.cluster.ports import PortRange
from bench.common import farm_task
from tests.conftest import RepoBuilder

WORKFLOW = """\
name: {name}
roles:
  - name: "good{{{{ i }}}}"
    for:
      begin: "0"
      end: "{last_good}"
      var: i
    task:
      load: farmtask
  - name: "bad{{{{ i }}}}"
    for:
      begin: "0"
      end: "{last_bad}"
      var: i
    vars:
      task_args: "{bad_args}"
    task:
      load: farmtask
"""


def farm_repo(repo: RepoBuilder, name: str, good: int, bad: int = 1, bad_args: str = "") -> RepoBuilder:
    repo.task("farmtask", farm_task())
    return repo.workflow(
        name, WORKFLOW.format(name=name, last_good=good - 1, last_bad=bad - 1, bad_args=bad_args)
    )


def farm_nodes() -> list[NodeSpec]:
    # One node for the farm executor: below the ephemeral port range, away from the other suites' ranges.
    return [NodeSpec("farmnode", control_ports=PortRange(27000, 27299), data_ports=PortRange(27300, 27399))]


def fake_nodes() -> list[NodeSpec]:
    # Two nodes, so placement spreads tasks; the ports are allocated but never bound by fake tasks.
    return [NodeSpec(f"fake{i}", control_ports=PortRange(22000 + i * 400, 22399 + i * 400)) for i in range(2)]
