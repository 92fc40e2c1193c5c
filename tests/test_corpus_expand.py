"""Conformance: every workflow of the real ControlWorkflows corpus expands as the original would.

The setup (corpus location, variables the original gets from outside the templates, the inventory
stand-in, the JIT export stand-ins) lives in `bench.corpus_setup`, shared with the template
benchmark; see its docstring for what is given and why.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest

from aliecs.workflow.channels import Endpoint, bind_channels, endpoint_keys, resolve_target
from aliecs.workflow.errors import TemplateError
from aliecs.workflow.providers import Providers, YamlInventory
from aliecs.workflow.repository import DirectoryRepository
from aliecs.workflow.template import load_workflow
from bench.corpus_setup import (
    BASE_VARS,
    CORPUS,
    INTEGRATIONS,
    INVENTORY,
    MORE_INTEGRATIONS,
    corpus_available,
    counts,
    expand,
    write_jit_exports,
)

pytestmark = pytest.mark.skipif(
    not corpus_available(),
    reason="corpus not found beside the clone (../shared/corpus; see README, Development)",
)


@pytest.fixture(scope="module")
def fallback(tmp_path_factory: pytest.TempPathFactory) -> DirectoryRepository:
    return write_jit_exports(tmp_path_factory.mktemp("jit-exports") / "repo")


# (workflow, extra user variables, expected (data-flow tasks, hook tasks, calls))
CASES = [
    # Per FLP: readout (direct), stfb + stfs (fairmq); hooks shmcleaner (before_DEPLOY) and
    # shmmonitor (DESTROY). 2 FLPs -> 6 + 4. No integration is enabled by default: 0 calls.
    ("readout-dataflow", {}, (6, 4, 0)),
    # One roc-config-uri task (basic, no trigger) per host x CRU card: 1 card on each FLP.
    ("o2-roc-config", {}, (2, 0, 0)),
    # Per host: shmmonitor and roc-cleanup basic tasks (no trigger, so not hooks).
    ("resources-cleanup", {}, (4, 0, 0)),
    # The TPC split sub-workflows on an FLP outside every range: all includes disabled, 0 tasks.
    ("tpc-idc-sac-full-split", {"it": "alio2-cr1-flp200"}, (0, 0, 0)),
    ("tpc-idc-sac-cmv-full-split", {"it": "alio2-cr1-flp200"}, (0, 0, 0)),
    ("tpc-idc-sac-cmv-full-split-proxy", {"it": "alio2-cr1-flp200"}, (0, 0, 0)),
    ("tpc-idc-sac-cmv-full-split-proxy-trigger", {"it": "alio2-cr1-flp200"}, (0, 0, 0)),
    ("tpc-idc-sac-cmv-full-split-proxy-trigger-only", {"it": "alio2-cr1-flp200"}, (0, 0, 0)),
    ("tpc-sac-cmv-full-split", {"it": "alio2-cr1-flp200"}, (0, 0, 0)),
    ("tpc-sac-cmv-full-split-trigger", {"it": "alio2-cr1-flp200"}, (0, 0, 0)),
    # flp001 is in tpc-idc-a's range (001-072): its 7-task stand-in export is included.
    # (jit/tpc-idc-a uses pdp_n_hbf_per_tf, a readout-dataflow default: given here.)
    ("tpc-idc-sac-full-split", {"it": "alio2-cr1-flp001", "pdp_n_hbf_per_tf": "128"}, (7, 0, 0)),
    # flp145 enables the tpc-sac include only (7 tasks).
    ("tpc-idc-sac-full-split", {"it": "alio2-cr1-flp145"}, (7, 0, 0)),
]


def test_every_corpus_workflow_is_covered() -> None:
    names = {p.stem for p in (CORPUS / "workflows").glob("*.yaml")}
    assert names == {name for name, _, _ in CASES}


@pytest.mark.parametrize(
    ("name", "user", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_corpus_counts(
    name: str, user: Mapping[str, str], expected: tuple[int, int, int], fallback: DirectoryRepository
) -> None:
    assert counts(expand(name, user, fallback)) == expected


def test_readout_dataflow_with_integrations_renders_every_command(fallback: DirectoryRepository) -> None:
    started = time.perf_counter()
    workflow = expand("readout-dataflow", INTEGRATIONS, fallback)
    elapsed = time.perf_counter() - started
    print(f"readout-dataflow with integrations expanded in {elapsed * 1000:.0f} ms")
    # Data flow, 20: per FLP readout + stfb + stfs + minimal-dpl (3) = 6, x2 = 12; the CTP readout
    # role (readout, stfb, stfs) = 3; the remote QC stand-in for TST = 5.
    # Hooks, 12: per FLP shmcleaner, shmmonitor, drop-caches, roc-cleanup = 4, x2 = 8; the CTP
    # role's shmcleaner, shmmonitor, drop-caches = 3; the QC server's shmmonitor = 1.
    # Calls, 26: dcs 5, ODC 10 (odc_partitions_cleanup false: no legacy cleanup), dd-scheduler 3,
    # trg 8 (reference controlworkflows.md §4.1 W1).
    assert counts(workflow) == (20, 12, 26)
    for role in workflow.tasks() + workflow.hooks():
        assert role.task is not None
        task_class = role.task.task_class
        special = {
            "task_id": "t1",
            "task_name": role.path,
            "task_class_name": task_class.identifier,
            "task_hostname": "flp001",
            "environment_id": "2oDvieFrVTi",
            "task_parent_role": role.parent.path if role.parent else "",
        }
        stack = task_class.stack_for(role.stack, special)
        command = task_class.render_command(stack, role.path)
        assert command.value
    assert {role.task.control_mode for role in workflow.hooks() if role.task} == {"hook"}
    # Every connect target resolves to a bound channel: role paths (`Up(2).Path`, `Parent().Path`)
    # and global aliases (`::readout-proxy-flp001` from the StfBuilder's role-level bind).
    endpoints: dict[tuple[str, str], Endpoint] = {}
    for role in workflow.tasks():
        assert role.task is not None
        stack = role.task.task_class.stack_for(role.stack, {"task_hostname": "flp001"})
        for channel in bind_channels(role, stack):
            for key in endpoint_keys(role.path, channel):
                assert key not in endpoints, f"{key} bound twice"
                endpoints[key] = Endpoint(f"bind:{role.path}:{channel.name}", f"{role.path}:{channel.name}")
    for role in workflow.tasks():
        for channel in role.connect:
            assert resolve_target(channel, role.path, endpoints)
    stfb = workflow.root.find("readout-dataflow.host-flp001.data-distribution-dpl.stfb")
    assert stfb is not None and stfb.task is not None
    (dpl_chan,) = bind_channels(stfb, stfb.task.task_class.stack_for(stfb.stack, {"task_hostname": "flp001"}))
    assert (dpl_chan.global_name, dpl_chan.addressing, dpl_chan.snd_buf_size) == (
        "readout-proxy-flp001",
        "ipc",
        "4",
    )
    calls = {role.path: role.call for role in workflow.calls()}
    start = calls["readout-dataflow.odc.start"]
    assert start is not None and start.func == "odc.Start()"


def test_readout_dataflow_all_integrations(fallback: DirectoryRepository) -> None:
    workflow = expand("readout-dataflow", {**INTEGRATIONS, **MORE_INTEGRATIONS}, fallback)
    # 26 + bookkeeping 1 (15 of its 16 calls are off while `bookkeeping_consuming_kafka` is
    # "true", the default) + lhc 4 + kafka 12 + ccdb 4 = 47.
    assert counts(workflow) == (20, 12, 47)
    # With the bookkeeping plugin doing its own updates, all 16 bookkeeping calls: 62, the
    # reference expander's figure (controlworkflows.md §4.1 W1).
    more = {**INTEGRATIONS, **MORE_INTEGRATIONS, "bookkeeping_consuming_kafka": "false"}
    assert counts(expand("readout-dataflow", more, fallback)) == (20, 12, 62)


def test_public_variables_and_untagged_defaults_are_dropped() -> None:
    # controlworkflows.md §6.1: `ctp_readout_host` has its `!public` tag commented out, so the
    # mapping is dropped and enabling the CTP readout without giving the host fails.
    with pytest.raises(
        TemplateError,
        match=r"readout-dataflow.yaml:\d+: role readout-dataflow.readout-ctp: "
        r'unknown name "ctp_readout_host"',
    ):
        expand("readout-dataflow", {"ctp_readout_enabled": "true"})


def test_static_include_of_a_missing_workflow_is_a_load_error() -> None:
    # §6.3: `qcdd_enabled` includes `qc-daq`, which exists only as a JIT file at HEAD.
    with pytest.raises(
        TemplateError,
        match=r"readout-dataflow.yaml:1606: role readout-dataflow.host-flp001.data-distribution-dpl.dpl: "
        r"cannot include 'qc-daq': no workflow named 'qc-daq'",
    ):
        expand("readout-dataflow", {"qcdd_enabled": "true", "dd_enabled": "true"})


def test_roc_config_args_is_broken_under_strict_names() -> None:
    # §6.2: roc-config-args' cmdline defaults reference its other defaults, which the role
    # stack does not have: rendering the task fails at deploy time naming the default.
    workflow = expand("o2-roc-config", {"roc_config_uri_enabled": "false"})
    role = workflow.tasks()[0]
    assert role.task is not None and role.task.task_class.name == "roc-config-args"
    with pytest.raises(
        TemplateError,
        match=r'roc-config-args.yaml: role roc-config-args \(defaults\.\w+\): unknown name "rocConfig',
    ):
        role.task.task_class.stack_for(role.stack)


def test_tpc_split_needs_it_from_its_parent() -> None:
    with pytest.raises(
        TemplateError,
        match=r'tpc-idc-sac-full-split.yaml:12: role tpc-idc-sac-full-split.tpc-idc-a: unknown name "it"',
    ):
        load_workflow(
            DirectoryRepository(CORPUS, name="controlworkflows"),
            "tpc-idc-sac-full-split",
            BASE_VARS,
            providers=Providers(inventory=YamlInventory(dict(INVENTORY))),
        )


def test_jit_without_o2_or_export_fails_clearly() -> None:
    with pytest.raises(TemplateError, match=r"cannot generate the DPL workflow for jit/tpc-idc-a"):
        expand("tpc-idc-sac-full-split", {"it": "alio2-cr1-flp001", "pdp_n_hbf_per_tf": "128"})
