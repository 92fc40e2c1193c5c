"""Integration plugins against stand-in services (tests/integration_servers) over real gRPC.

A readout-dataflow-style workflow of our own (its calls sit at the trigger points the real corpus
uses; `test_the_cycle_uses_the_corpus_trigger_points` checks that against the corpus in place) runs
DEPLOY..RESET and teardown; every request must reach the right service, in the right order, with the
arguments the original's plugins send. Then the ways a service can fail: refusing, failing a
detector, answering too late, dropping the connection, or not being there at all.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aliecs import Core, TransitionError
from aliecs.events import IntegratedServiceEvent
from aliecs.integrations import (
    READY,
    TRANSIENT_FAILURE,
    PluginSettings,
    load_plugins,
)
from aliecs.server import convert
from aliecs.testing import isolated_nodes, wait_for
from bench.corpus_setup import INTEGRATIONS, MORE_INTEGRATIONS, corpus_available, expand, write_jit_exports
from tests.conftest import RepoBuilder
from tests.integration_servers import Services

pytestmark = pytest.mark.usefixtures("no_leaked_processes")

PLUGINS = ("dcs", "trg", "odc", "ddsched", "bookkeeping")

# Each call: (role name, func, trigger, await or "", critical). The same points as readout-dataflow.
CALLS = [
    ("bk-create-env", "bookkeeping.CreateEnv()", "before_DEPLOY", "", False),
    ("odc-init", "odc.PartitionInitialize()", "before_DEPLOY", "after_DEPLOY-1", True),
    ("bk-env-deployed", "bookkeeping.UpdateEnv()", "after_DEPLOY+100", "", False),
    ("dcs-pfr", "dcs.PrepareForRun()", "before_CONFIGURE", "after_CONFIGURE-1", False),
    ("dd-init", "ddsched.PartitionInitialize()", "before_CONFIGURE", "after_CONFIGURE-1", True),
    ("odc-configure", "odc.Configure()", "after_CONFIGURE-1", "after_CONFIGURE-1", True),
    ("bk-env-configured", "bookkeeping.UpdateEnv()", "after_CONFIGURE+100", "", False),
    ("trg-pfr", "trg.PrepareForRun()", "before_START_ACTIVITY-200", "", True),
    ("trg-load", "trg.RunLoad()", "before_START_ACTIVITY+10", "", True),
    ("bk-sor", "bookkeeping.StartOfRun()", "before_START_ACTIVITY+10", "", False),
    ("bk-fill", "bookkeeping.RetrieveFillInfo()", "before_START_ACTIVITY+11", "", False),
    ("dcs-sor", "dcs.StartOfRun()", "before_START_ACTIVITY+100", "", True),
    ("odc-start", "odc.Start()", "before_START_ACTIVITY+100", "after_START_ACTIVITY-10", True),
    ("trg-start", "trg.RunStart()", "after_START_ACTIVITY-10", "", True),
    ("bk-run-start", "bookkeeping.UpdateRunStart()", "after_START_ACTIVITY+100", "", False),
    ("trg-stop", "trg.RunStop()", "before_STOP_ACTIVITY-10", "", False),
    ("odc-stop", "odc.Stop()", "before_STOP_ACTIVITY", "after_STOP_ACTIVITY-50", True),
    ("trg-unload", "trg.RunUnload()", "after_STOP_ACTIVITY-100", "", False),
    ("dcs-eor", "dcs.EndOfRun()", "after_STOP_ACTIVITY-50", "", True),
    ("bk-run-stop", "bookkeeping.UpdateRunStop()", "after_STOP_ACTIVITY+100", "", False),
    ("odc-reset", "odc.Reset()", "before_RESET", "after_RESET-1", True),
    ("dd-terminate", "ddsched.PartitionTerminate()", "after_RESET-1", "", True),
    ("odc-terminate", "odc.PartitionTerminate()", "after_RESET+100", "after_RESET+100", True),
    ("trg-ensure-stop", "trg.EnsureRunStop()", "DESTROY-100", "", False),
    ("trg-ensure-unload", "trg.EnsureRunUnload()", "DESTROY-99", "", False),
    ("dcs-cleanup", "dcs.Cleanup()", "DESTROY", "", False),
    ("dd-ensure", "ddsched.EnsureTermination()", "DESTROY", "", False),
    ("odc-cleanup", "odc.EnsureCleanup()", "DESTROY", "", False),
]


def cycle_workflow() -> str:
    roles = "\n".join(
        f"  - name: {name}\n"
        f"    call: {{func: '{func}', trigger: {trigger}, {f'await: {await_}, ' if await_ else ''}"
        f"timeout: '{{{{ call_timeout }}}}', critical: {str(critical).lower()}}}"
        for name, func, trigger, await_, critical in CALLS
    )
    return f"""\
name: physics
defaults:
  call_timeout: 10s
  detectors: '["TPC", "ITS"]'
  dcs_detectors: '["TPC", "ITS"]'
  trg_detectors: '["TPC", "ITS"]'
  run_type: PHYSICS
  trg_enabled: "true"
  trg_global_run_enabled: "true"
  trg_global_config: ctp-global
  trg_runtime_config: ltu-runtime
  dcs_enabled: "true"
  dcs_sor_parameters: '{{"mode": "physics"}}'
  tpc_dcs_sor_parameters: '{{"hv": "on"}}'
  dd_enabled: "true"
  ddsched_partition_param: x
  epn_enabled: "true"
  pdp_config_option: Repository hash
  odc_script: o2-epn-workflow.sh
  odc_plugin: odc-rp-epn
  odc_resources: '{{"zone": "online", "n": "2"}}'
  odc_n_epns: "2"
  odc_padding_timeout: 1s
  lhc_period: LHC26a
  hosts: '["localhost"]'
roles:
  - name: readout
    vars: {{dd_discovery_ib_hostname: flp001-ib, dd_discovery_stfb_id: stfb-1}}
    task: {{load: fake}}
{roles}
"""


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    async with Services() as running:
        yield running


def settings(endpoints: dict[str, str]) -> PluginSettings:
    return PluginSettings.parse([",".join(PLUGINS)], [f"{name}={endpoints[name]}" for name in PLUGINS])


def embedded(tmp_path: Path, repo: RepoBuilder, endpoints: dict[str, str]) -> Core:
    repo.workflow("physics", cycle_workflow())
    return Core.embedded(
        state_dir=tmp_path / "state",
        nodes=isolated_nodes(),
        repository=repo.repository,
        plugins=load_plugins(settings(endpoints)),
    )


async def test_a_physics_run_reaches_every_service_in_order(
    tmp_path: Path, repo: RepoBuilder, services: Services
) -> None:
    async with embedded(tmp_path, repo, services.endpoints) as core:
        assert {info.name: info.connection_state for info in core.integrations.services()} == dict.fromkeys(
            PLUGINS, READY
        )
        events = core.events.subscribe()
        env = await core.new_environment("physics")
        for transition in ("CONFIGURE", "START_ACTIVITY"):  # new_environment deployed it
            result = await env.transition(transition)
            assert result.warnings == (), (transition, result.warnings)
        run = env.run_number
        # What GetEnvironment(s) answer in integratedServicesData.
        info = convert.environment_info(env)
        data = {name: json.loads(text) for name, text in info.integrated_services_data.items()}
        assert data == {
            "trg": {"runNumber": run, "state": "RUNNING", "global": True},
            "odc": {"state": "RUNNING", "runNumber": run},
            "ddsched": {"partitionState": "PARTITION_CONFIGURED"},
            "bookkeeping": {"pendingRunStop": run},
            "dcs": {"pendingEOR": run},
        }
        for transition in ("STOP_ACTIVITY", "RESET"):
            assert (await env.transition(transition)).warnings == ()
        await env.destroy()
        events.close()
        seen = [
            (event.operation_name, event.operation_status)
            async for event in events
            if isinstance(event, IntegratedServiceEvent)
            and event.environment_id == env.id
            and not event.operation_step
        ]

    assert services.names("dcs") == ["dcs.PrepareForRun", "dcs.StartOfRun", "dcs.EndOfRun"]
    assert services.names("trg") == [
        "trg.PrepareForRun",
        "trg.RunLoad",
        "trg.RunStart",
        "trg.RunStop",
        "trg.RunUnload",
    ]
    assert services.names("odc") == [
        "odc.Run",
        "odc.SetProperties",
        "odc.Configure",
        "odc.SetProperties",
        "odc.Start",
        "odc.SetProperties",
        "odc.Stop",
        "odc.Reset",
        "odc.Terminate",
        "odc.Shutdown",
    ]
    assert services.names("ddsched") == ["ddsched.PartitionInitialize", "ddsched.PartitionTerminate"]
    assert services.names("bookkeeping") == [
        "bookkeeping.EnvironmentService.Create",
        "bookkeeping.EnvironmentService.Update",
        "bookkeeping.EnvironmentService.Update",
        "bookkeeping.RunService.Create",
        "bookkeeping.LogService.Create",
        "bookkeeping.FlpService.CreateMany",
        "bookkeeping.LhcFillService.GetLast",
        "bookkeeping.RunService.Update",
        "bookkeeping.RunService.Update",
    ]
    # Across services, the weights decide: start of run, then end of run.
    order = services.names()
    for earlier, later in [
        ("odc.Run", "dcs.PrepareForRun"),
        ("trg.PrepareForRun", "trg.RunLoad"),
        ("bookkeeping.FlpService.CreateMany", "dcs.StartOfRun"),
        ("dcs.StartOfRun", "trg.RunStart"),
        ("odc.Start", "trg.RunStart"),
        ("trg.RunStop", "odc.Stop"),
        ("trg.RunUnload", "dcs.EndOfRun"),
        ("dcs.EndOfRun", "ddsched.PartitionTerminate"),
        ("odc.Reset", "odc.Terminate"),
    ]:
        assert order.index(earlier) < order.index(later), (earlier, later, order)

    # The arguments, as the original's plugins send them.
    env_id = env.id
    (pfr,) = services.requests("dcs", "PrepareForRun")
    assert pfr["partitionId"] == env_id and pfr["runType"] == "PHYSICS"
    (sor,) = services.requests("dcs", "StartOfRun")
    assert sor["runNumber"] == run and sor["runType"] == "PHYSICS"
    assert sor["detectors"] == [
        {"detector": "TPC", "extraParameters": {"mode": "physics", "hv": "on"}},
        {"detector": "ITS", "extraParameters": {"mode": "physics"}},
    ]
    (eor,) = services.requests("dcs", "EndOfRun")
    assert eor["runNumber"] == run and [d["detector"] for d in eor["detectors"]] == ["TPC", "ITS"]
    assert services.requests("trg", "PrepareForRun") == [{"runtype": "PHYSICS", "detectors": "tpc its"}]
    assert services.requests("trg", "RunLoad") == [
        {"runn": run, "config": "ctp-global", "detectors": "tpc its"}
    ]
    assert services.requests("trg", "RunStart") == [
        {"runn": run, "config": "ltu-runtime"}
    ]  # global: no detector
    assert services.requests("trg", "RunStop") == [{"runn": run}]
    assert services.requests("trg", "RunUnload") == [{"runn": run}]
    (odc_run,) = services.requests("odc", "Run")
    assert odc_run["partitionid"] == env_id and odc_run["script"] == "o2-epn-workflow.sh"
    assert odc_run["plugin"] == "odc-rp-epn" and odc_run["resources"] == '{"zone": "online", "n": "2"}'
    assert 0 < odc_run["timeout"] <= 9  # the call's 10 s minus the padding
    configure_props, start_props, stop_props = services.requests("odc", "SetProperties")
    assert {p["key"]: p.get("value", "") for p in configure_props["properties"]} == {
        "environment_id": env_id,
        "run_type": "PHYSICS",
        "lhc_period": "LHC26a",
        "detectors": "ITS,TPC",
    }
    started = {p["key"]: p.get("value", "") for p in start_props["properties"]}
    assert (
        started["runNumber"] == str(run) and started["run_number"] == str(run) and started["cleanup"] == "1"
    )
    assert started["run_start_time_ms"] == str(env.run_start_ms)
    assert started["fill_info_fill_number"] == "8123"  # from Bookkeeping's RetrieveFillInfo, earlier
    assert {p["key"] for p in stop_props["properties"]} == {
        "run_end_time_ms",
        "fill_info_fill_number",
        "fill_info_filling_scheme",
        "fill_info_beam_type",
    }
    (start,) = services.requests("odc", "Start")
    assert start["request"]["partitionid"] == env_id and start["request"]["runnr"] == str(run)
    (dd_init,) = services.requests("ddsched", "PartitionInitialize")
    assert dd_init["partitionInfo"] == {"environmentId": env_id, "partitionId": env_id}
    assert dd_init["stfbHostIdMap"] == {"stfb-1": "flp001-ib"}
    assert dd_init["partitionParams"]["partition_param"] == "x"
    (created,) = services.requests("bookkeeping", "RunService.Create")
    assert created["runNumber"] == run and created["environmentId"] == env_id
    assert (
        created["detectors"] == ["TPC", "ITS"] and created["runType"] == "PHYSICS"  # numbers 3, 32, 1
    )
    assert created["nFlps"] == 1 and created["nEpns"] == 2 and created["dcs"] and created["ddFlp"]
    (flps,) = services.requests("bookkeeping", "FlpService.CreateMany")
    assert [f["hostname"] for f in flps["flps"]] == ["localhost"]
    update_start, update_stop = services.requests("bookkeeping", "RunService.Update")
    assert update_start["timeO2Start"] == str(env.run_start_ms) and update_start["triggerValue"] == "CTP"
    assert "timeTrgStart" in update_start and "timeO2End" not in update_start
    assert update_stop["runNumber"] == run and {"timeO2End", "timeTrgEnd"} <= set(update_stop)
    statuses = [r.get("status") for r in services.requests("bookkeeping", "EnvironmentService.Update")]
    assert statuses == ["DEPLOYED", "CONFIGURED"]

    # Each plugin reported its operations as integratedServiceEvents.
    assert ("dcs.StartOfRun()", "STARTED") in seen and ("dcs.StartOfRun()", "DONE_OK") in seen
    assert ("trg.RunLoad()", "DONE_OK") in seen and ("odc.Configure()", "DONE_OK") in seen


# -- when a service says no, answers late, goes away or is not there -------------------------------


async def test_a_refused_dcs_detector_fails_start_naming_it(
    tmp_path: Path, repo: RepoBuilder, services: Services
) -> None:
    services.script("dcs", "StartOfRun", detectors={"TPC": "SOR_FAILURE"})
    async with embedded(tmp_path, repo, services.endpoints) as core:
        env = await core.new_environment("physics")
        await env.transition("CONFIGURE")
        with pytest.raises(TransitionError) as caught:
            await env.transition("START_ACTIVITY")
        message = str(caught.value)
        assert "physics.dcs-sor at before_START_ACTIVITY+100" in message
        assert "DCS StartOfRun call failed: SOR failed for TPC (SOR_FAILURE: TPC says no)" in message
        assert "ITS" not in message.split("SOR failed for")[1]  # ITS answered RUN_OK
        assert env.state == "ERROR"
        assert "pendingEOR" in json.loads(env.integrated_services_data()["dcs"])
        await env.destroy()
    # The EOR owed for the run is sent at teardown (dcs.Cleanup), for both detectors.
    assert services.names("dcs")[-1] == "dcs.EndOfRun"
    (eor,) = services.requests("dcs", "EndOfRun")
    assert [d["detector"] for d in eor["detectors"]] == ["TPC", "ITS"]


async def test_a_detector_unavailable_for_sor_blocks_it_for_all(
    tmp_path: Path, repo: RepoBuilder, services: Services
) -> None:
    async with embedded(tmp_path, repo, services.endpoints) as core:
        plugin = core.integrations.plugins["dcs"]
        env = await core.new_environment("physics")
        await env.transition("CONFIGURE")
        services.dcs.set_availability("ITS", sor="SOR_UNAVAILABLE")
        await wait_for(
            core,
            lambda: plugin.data()["detectors"].get("ITS", {}).get("sorAvailability") == "SOR_UNAVAILABLE",
            "the DCS matrix update",
        )
        with pytest.raises(
            TransitionError, match=r"detectors are in incompatible states: ITS in SOR_UNAVAILABLE"
        ):
            await env.transition("START_ACTIVITY")
        assert "dcs.StartOfRun" not in services.names()  # no SOR for anyone
        await env.destroy()


async def test_refusals_late_answers_and_dropped_connections_say_what_happened(
    tmp_path: Path, repo: RepoBuilder, services: Services
) -> None:
    async with embedded(tmp_path, repo, services.endpoints) as core:
        # The trigger system refuses to load the run: rc != 0 with its message.
        services.script("trg", "RunLoad", refuse="LTU tpc busy")
        env = await core.new_environment("physics")
        await env.transition("CONFIGURE")
        with pytest.raises(
            TransitionError, match=r"TRG RunLoad call failed: response code 1 from TRG: LTU tpc busy"
        ):
            await env.transition("START_ACTIVITY")
        await env.destroy()

        # ODC answers after the call's timeout.
        services.script("odc", "Configure", delay=5)
        env = await core.new_environment("physics", vars={"call_timeout": "1s", "odc_padding_timeout": "0s"})
        with pytest.raises(TransitionError, match=r"EPN Configure call failed: no answer from ODC within 1s"):
            await env.transition("CONFIGURE")
        await env.destroy()

        # The DD scheduler goes away in the middle of PartitionInitialize.
        services.script("ddsched", "PartitionInitialize", drop=True)
        env = await core.new_environment("physics")
        with pytest.raises(
            TransitionError, match=r"DDsched PartitionInitialize call failed: .*(dropped|cannot reach)"
        ):
            await env.transition("CONFIGURE")
        states = {info.name: (info.connection_state, info.reason) for info in core.integrations.services()}
        assert states["ddsched"][0] == TRANSIENT_FAILURE and states["odc"][0] == READY
        await env.destroy()


async def test_a_service_away_at_start_is_reported_and_its_calls_fail(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    repo.workflow(
        "triggered",
        """\
        name: triggered
        roles:
          - name: worker
            task: {load: fake}
          - name: pfr
            call: {func: trg.PrepareForRun(), trigger: before_CONFIGURE, timeout: 5s}
        """,
    )
    plugins = load_plugins(PluginSettings.parse(["trg"], [f"trg=127.0.0.1:{port}"]))
    async with Core.embedded(
        state_dir=tmp_path / "state", nodes=isolated_nodes(), repository=repo.repository, plugins=plugins
    ) as core:
        (info,) = core.integrations.services()
        assert (info.name, info.endpoint, info.connection_state) == (
            "trg",
            f"127.0.0.1:{port}",
            TRANSIENT_FAILURE,
        )
        assert "cannot connect to" in info.reason and "refused" in info.reason.lower()
        env = await core.new_environment("triggered")  # the core and DEPLOY work without it
        with pytest.raises(
            TransitionError, match=rf"TRG PrepareForRun call failed: cannot reach Trigger at 127.0.0.1:{port}"
        ):
            await env.transition("CONFIGURE")
        await env.destroy()


@pytest.mark.skipif(not corpus_available(), reason="corpus not found beside the clone (../shared/corpus)")
def test_the_cycle_uses_the_corpus_trigger_points(tmp_path: Path) -> None:
    """Every call of the cycle sits where readout-dataflow (with its integrations on) puts the same
    function: same trigger, same await point, same criticality."""
    fallback = write_jit_exports(tmp_path / "jit")
    # The legacy Bookkeeping calls, and TPC (whose runs get the trigger PFR).
    on = {
        **INTEGRATIONS,
        **MORE_INTEGRATIONS,
        "bookkeeping_consuming_kafka": "false",
        "detectors": '["TST", "TPC"]',
    }
    workflow = expand("readout-dataflow", on, fallback=fallback)
    corpus: dict[str, set[tuple[str, str, bool]]] = {}
    for role in workflow.calls():
        assert role.call is not None
        await_ = role.call.await_ if role.call.await_ != role.call.trigger else ""
        corpus.setdefault(role.call.func, set()).add((role.call.trigger, await_, role.call.critical))
    for _name, func, trigger, await_, critical in CALLS:
        assert (trigger, await_ if await_ != trigger else "", critical) in corpus[func], (func, corpus[func])
