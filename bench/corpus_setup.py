"""Expanding the real ControlWorkflows corpus outside a core: inventory, variables, JIT stand-ins.

Shared by the conformance tests (tests/test_corpus_expand.py) and the template benchmark
(bench/templates.py) so that the benchmark times exactly the expansion the tests check.

The corpus is read in place from `../shared/corpus/controlworkflows` (next to the repository); it
may be absent, so callers check `corpus_available()`. Variables that the original gets from outside
the templates (reference controlworkflows.md §3.3) are given explicitly: `hosts`, `consul_endpoint`,
`modulepath`, `infologger_mode`, `environment_id` (added by the core), and `it` for the TPC split
sub-workflows that normally receive it from `readout-dataflow`. The inventory is a local stand-in
for apricot (two FLPs of detector TST, one CRU card each).

JIT includes (`dpl.GenerateFromUri`) need O2 binaries; they go to a fallback repository of exported
sub-workflows written by `write_jit_exports`. The stand-ins have the task counts of the legacy
exports (`minimal-dpl`: 3 fairmq tasks, `qcmn-daq-remote`: 5, `tpc-*`: 7; reference §4.1 W4/W6).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aliecs.workflow.jit import CommandGenerator, JitRegistry
from aliecs.workflow.providers import MemoryStore, Providers, YamlInventory
from aliecs.workflow.repository import DirectoryRepository
from aliecs.workflow.template import Workflow, load_workflow

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "controlworkflows"

HOSTS = '["flp001","flp002"]'
BASE_VARS = {
    "hosts": HOSTS,
    "consul_endpoint": "consul.local:8500",
    "modulepath": "",
    "infologger_mode": "infoLoggerD",
    "environment_id": "2oDvieFrVTi",
    "apricot_endpoint": "apricot.local:32188",  # only the JIT files use it
}
INVENTORY: dict[str, dict[str, Any]] = {
    "flp001": {"detector": "TST", "cards": {"0228": ["0", "1"]}},
    "flp002": {"detector": "TST", "cards": {"0229": ["0"]}},
    "flp-ctp": {"detector": "CTP", "cards": {}},
    "alio2-cr1-flp001": {"detector": "TPC"},
    "alio2-cr1-flp145": {"detector": "TPC"},
}

# The integrations of readout-dataflow the conformance test enables (its largest common expansion).
INTEGRATIONS = {
    "dcs_enabled": "true",
    "epn_enabled": "true",
    "dd_enabled": "true",
    "trg_enabled": "true",
    "qc_remote_enabled": "true",
    "ctp_readout_enabled": "true",
    "ctp_readout_host": "flp-ctp",
    "roc_cleanup_enabled": "true",
    "drop_caches_enabled": "true",
    "tst_dpl_workflow": "minimal-dpl",
    "tst_qc_remote_workflow": "qcmn-daq-remote",
    "detectors": '["TST"]',
}
MORE_INTEGRATIONS = {
    "bookkeeping_enabled": "true",
    "lhc_enabled": "true",
    "kafka_enabled": "true",
    "ccdb_enabled": "true",
}

FAIRMQ_TASK = """\
name: {name}
control: {{mode: fairmq}}
wants: {{cpu: 0.1, memory: 10}}
bind:
  - name: out
    type: push
    transport: shmem
    rateLogging: "{{{{ fmq_rate_logging }}}}"
command:
  shell: true
  env: ["O2_DETECTOR={{{{ detector }}}}"]
  value: "o2-dpl-stand-in --id {name} --session default"
  arguments: ["--shm-segment-size {{{{ shm_segment_size }}}}"]
"""

STAND_INS = {"qcmn-daq-remote": 5, "tpc-idc-a": 7, "tpc-idc-c": 7, "tpc-sac": 7}

# Shaped like the legacy export (reference §4.1 W6): reads from the StfBuilder's global
# `readout-proxy-<it>` channel and offers `downstream-<it>` to the DPL StfSender.
MINIMAL_DPL = """\
name: minimal-dpl
vars:
  shm_segment_size: "1000"
roles:
  - name: readout-proxy
    connect:
      - name: readout-proxy
        type: pull
        target: "::readout-proxy-{{ it }}"
        rateLogging: "{{ fmq_rate_logging }}"
    task: {load: minimal-dpl-task}
  - name: processor
    connect:
      - {name: in, type: pull, target: "{{ Parent().Path }}.readout-proxy:out"}
    task: {load: minimal-dpl-task}
  - name: output-proxy
    connect:
      - {name: in, type: pull, target: "{{ Parent().Path }}.processor:out"}
    bind:
      - {name: downstream, type: push, transport: shmem, addressing: ipc, global: "downstream-{{ it }}"}
    task: {load: minimal-dpl-task}
"""


def corpus_available() -> bool:
    """Whether the corpus is checked out next to the repository (it is not shipped with it)."""
    return (CORPUS / "workflows").is_dir()


def _export(name: str, count: int) -> str:
    """A JIT stand-in: `count` fairmq tasks in a ring, like a legacy DPL export of that size."""
    roles = "\n".join(
        f"  - name: {name}-{i}\n"
        f"    connect:\n"
        f"      - {{name: in, type: pull, target: '{{{{ Parent().Path }}}}.{name}-{(i - 1) % count}:out'}}\n"
        f"    task: {{load: {name}-task}}"
        for i in range(count)
    )
    return f"name: {name}\nvars:\n  shm_segment_size: '1000'\nroles:\n{roles}\n"


def write_jit_exports(root: Path) -> DirectoryRepository:
    """Write the JIT stand-in sub-workflows under `root` (which must not exist yet, or be empty)
    and return them as the repository JIT generation falls back to."""
    (root / "workflows").mkdir(parents=True)
    (root / "tasks").mkdir()
    for name, count in STAND_INS.items():
        (root / "workflows" / f"{name}.yaml").write_text(_export(name, count))
        (root / "tasks" / f"{name}-task.yaml").write_text(FAIRMQ_TASK.format(name=f"{name}-task"))
    (root / "workflows" / "minimal-dpl.yaml").write_text(MINIMAL_DPL)
    (root / "tasks" / "minimal-dpl-task.yaml").write_text(FAIRMQ_TASK.format(name="minimal-dpl-task"))
    return DirectoryRepository(root, name="jit-exports")


def expand(name: str, user: Mapping[str, str], fallback: DirectoryRepository | None = None) -> Workflow:
    """Expand corpus workflow `name` with the base variables plus `user`, as a new environment would:
    fresh providers, JIT registry and repository object each time (parse caches are process-wide)."""
    providers = Providers(inventory=YamlInventory(dict(INVENTORY)), store=MemoryStore())
    jit = JitRegistry(CommandGenerator(fallback=fallback, run_commands=False))
    repository = DirectoryRepository(CORPUS, name="controlworkflows")
    return load_workflow(repository, name, {**BASE_VARS, **user}, providers=providers, jit=jit)


def counts(workflow: Workflow) -> tuple[int, int, int]:
    """(data-flow tasks, hook tasks, calls): the shape the conformance checks compare."""
    return len(workflow.tasks()), len(workflow.hooks()), len(workflow.calls())
