"""Loading integration plugins from the configuration: names, endpoints, third-party entry points,
and how `aliecs-core` and `coconut info` show them."""

from __future__ import annotations

import json
import shlex
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from aliecs import Core
from aliecs.integrations import (
    ENTRY_POINT_GROUP,
    PluginConfigError,
    PluginSettings,
    ServicePlugin,
    TestPlugin,
    available_plugins,
    load_plugins,
)
from aliecs.integrations.base import CallContext
from aliecs.integrations.dcs import DcsPlugin
from aliecs.integrations.testplugin import MAX_CALLS, MAX_GATES
from aliecs.testing import core_testplugin, isolated_nodes
from tests.conftest import RepoBuilder
from tests.core_process import coconut, start_core, stop_or_kill
from tests.doc_examples import ROOT, blocks, write_files
from tests.integration_servers import Services
from tests.occ_helpers import free_port


def test_settings_name_plugins_and_their_endpoints() -> None:
    settings = PluginSettings.parse(["dcs, trg", "trg"], ["dcs=127.0.0.1:50051", "trg=dns:///ctp:50060"])
    assert settings.names == ("dcs", "trg") and settings.endpoints["trg"] == "dns:///ctp:50060"
    plugins = load_plugins(settings)
    assert isinstance(plugins["dcs"], DcsPlugin) and plugins["dcs"].endpoint == "127.0.0.1:50051"
    assert (plugins["trg"].host, plugins["trg"].port) == ("ctp", 50060)  # type: ignore[attr-defined]
    assert load_plugins(PluginSettings()) == {}  # nothing by default, not even testplugin


def test_each_core_given_no_plugins_has_its_own_testplugin(tmp_path: Path) -> None:
    """No process-wide instance: two embedded cores in one process never share a call record."""
    first = Core.embedded(state_dir=tmp_path / "one")
    second = Core.embedded(state_dir=tmp_path / "two")
    assert isinstance(core_testplugin(first), TestPlugin)
    assert core_testplugin(first) is not core_testplugin(second)
    assert core_testplugin(first) is first.integrations.plugins["testplugin"]  # one per core, shared within
    with pytest.raises(LookupError, match="no testplugin"):
        core_testplugin(Core.embedded(state_dir=tmp_path / "three", plugins={}))


async def test_testplugin_keeps_a_bounded_record_and_bounded_gates() -> None:
    plugin = TestPlugin()

    def functions(environment_id: str) -> Any:
        call = CallContext(environment_id, "role", "testplugin.Test()", "", "", 1.0, True, {})
        return plugin.functions(call)

    record = functions("env")["Test"]
    for index in range(MAX_CALLS + 5):
        await record(str(index))
    labels = plugin.recorded("env")
    assert len(labels) == MAX_CALLS and labels[0] == "5" and labels[-1] == str(MAX_CALLS + 4)
    open_gate = functions("env")["Open"]
    for index in range(MAX_GATES):
        open_gate(f"g{index}")
    assert open_gate("g0") == "g0"  # a known gate is still fine
    with pytest.raises(RuntimeError, match=f"more than {MAX_GATES} gates; gate 'one-more' refused"):
        functions("other")["Open"]("one-more")


@pytest.mark.parametrize(
    ("names", "endpoints", "error"),
    [
        (["lhc"], [], "no plugin named 'lhc' (known: bookkeeping, dcs, ddsched, odc, testplugin, trg"),
        (
            ["dcs"],
            [],
            "plugin dcs needs an endpoint: --plugin-endpoint dcs=HOST:PORT "
            "(the original's dcsServiceEndpoint)",
        ),
        (["odc"], ["odc=farm"], "plugin odc: endpoint 'farm' is not HOST:PORT"),
        (["odc"], ["odc=farm:99999"], "plugin odc: endpoint 'farm:99999' is not HOST:PORT"),
        (["odc"], ["odc"], "--plugin-endpoint 'odc': expected NAME=HOST:PORT"),
        (["trg"], ["dcs=a:1"], "--plugin-endpoint dcs: plugin not loaded (add it to --integration-plugins)"),
        (["bad-name"], [], "--integration-plugins: 'bad-name' is not a plugin name"),
    ],
)
def test_bad_configuration_says_what_to_fix(names: list[str], endpoints: list[str], error: str) -> None:
    with pytest.raises(PluginConfigError) as caught:
        load_plugins(PluginSettings.parse(names, endpoints))
    assert error in str(caught.value)


THIRD_PARTY = '''\
"""A third party's plugin, shipped as its own package."""
from aliecs.integrations import ServicePlugin


class LhcPlugin(ServicePlugin):
    name = "lhc"
    pretty_name = "LHC"

    def functions(self, call):
        async def update_fill_info():
            call.set_var("fill_info_fill_number", "9001")
            return "9001"

        return {"UpdateFillInfo": update_fill_info}


def broken(endpoint):
    raise RuntimeError("no DIP client here")
'''


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution (a dist-info directory on sys.path) declaring `aliecs.plugins`."""
    site = tmp_path / "site"
    (site / "lhc_plugin.py").parent.mkdir(parents=True)
    (site / "lhc_plugin.py").write_text(THIRD_PARTY)
    info = site / "lhc_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lhc-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "lhc = lhc_plugin:LhcPlugin\nbroken = lhc_plugin:broken\ndcs = lhc_plugin:LhcPlugin\n"
    )
    monkeypatch.syspath_prepend(str(site))


@pytest.mark.usefixtures("third_party")
async def test_a_third_party_plugin_is_loaded_from_its_entry_point(tmp_path: Path, repo: RepoBuilder) -> None:
    known = available_plugins()
    assert known["lhc"] == "lhc_plugin:LhcPlugin" and known["dcs"] == "aliecs.integrations.dcs:DcsPlugin"
    with pytest.raises(PluginConfigError, match="plugin broken: no DIP client here"):
        load_plugins(PluginSettings.parse(["broken"], []))
    plugins = load_plugins(PluginSettings.parse(["lhc", "testplugin"], ["lhc=dip.cern.ch:9092"]))
    assert isinstance(plugins["lhc"], ServicePlugin) and isinstance(plugins["testplugin"], TestPlugin)
    repo.workflow(
        "fill",
        """\
        name: fill
        roles:
          - name: worker
            task: {load: fake}
          - name: fill
            call: {func: lhc.UpdateFillInfo(), trigger: before_CONFIGURE}
          - name: check
            call: {func: 'testplugin.Test("fill " + fill_info_fill_number)', trigger: after_CONFIGURE}
        """,
    )
    async with Core.embedded(
        state_dir=tmp_path / "state", nodes=isolated_nodes(), repository=repo.repository, plugins=plugins
    ) as core:
        assert [
            (s.name, s.pretty_name, s.endpoint, s.connection_state) for s in core.integrations.services()
        ] == [
            ("lhc", "LHC", "dip.cern.ch:9092", "READY"),
            ("testplugin", "testplugin", "in-process", "READY"),
        ]
        env = await core.new_environment("fill")
        await env.transition("CONFIGURE")
        assert plugins["testplugin"].recorded(env.id) == ["fill 9001"]  # type: ignore[attr-defined]
        await env.destroy()


@pytest_asyncio.fixture
async def services() -> AsyncIterator[Services]:
    async with Services() as running:
        yield running


@pytest.mark.usefixtures("no_leaked_processes")
async def test_coconut_info_and_get_integrated_services_list_the_plugins(
    tmp_path: Path, services: Services
) -> None:
    endpoints = services.endpoints
    await services.drop("odc")  # configured but away
    # The README's command line, with the stand-ins' addresses for the example's.
    (example,) = [
        b for b in blocks(ROOT / "README.md") if b.language == "console" and "--integration-plugins" in b.body
    ]
    command, *printed_example = example.body.splitlines()
    addresses = {"dcs-gateway.example:50051": endpoints["dcs"], "odc.example:50052": endpoints["odc"]}
    for example_address, address in addresses.items():
        command = command.replace(example_address, address)
        printed_example = [line.replace(example_address, address) for line in printed_example]
    core = await start_core(tmp_path, free_port(), *shlex.split(command.removeprefix("$ "))[1:])
    try:
        printed = "\n".join(core.lines)
        assert printed_example[0] in printed
        assert printed_example[1].split("(")[0] in printed and "Connection refused)" in printed
        table = await coconut(core, "info")
        rows = {
            line.split()[0]: line for line in table.splitlines() if line.strip().startswith(("DCS", "ODC"))
        }
        assert endpoints["dcs"] in rows["DCS"] and "READY" in rows["DCS"]
        assert endpoints["odc"] in rows["ODC"] and "TRANSIENT_FAILURE" in rows["ODC"]
        answer = json.loads(await coconut(core, "info", "--output", "json"))
        listed = answer["services"]["services"]
        assert sorted(listed) == ["dcs", "odc"]  # no testplugin in production
        assert listed["dcs"]["connectionState"] == "READY" and listed["dcs"]["enabled"]
        matrix = json.loads(listed["dcs"]["data"])["detectors"]
        assert set(matrix) == {"TPC", "ITS", "TOF"} and matrix["TPC"]["sorAvailability"] == "SOR_AVAILABLE"
        assert "Connection refused" in json.loads(listed["odc"]["data"])["reason"]
    finally:
        await stop_or_kill(core)


async def test_the_readme_plugin_example_is_loaded_from_its_entry_point(
    tmp_path: Path, repo: RepoBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    written = write_files(
        [b for b in blocks(ROOT / "README.md") if b.file in ("pyproject.toml", "lhc_plugin.py")], site
    )
    assert len(written) == 2
    project = tomllib.loads((site / "pyproject.toml").read_text())["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"  # as pip installs it
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    points = project["entry-points"][ENTRY_POINT_GROUP]
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
    )
    monkeypatch.syspath_prepend(str(site))
    plugins = load_plugins(PluginSettings.parse(["lhc,testplugin"], ["lhc=dip.example:9092"]))
    repo.workflow(
        "fill",
        """\
        name: fill
        roles:
          - name: worker
            task: {load: fake}
          - name: fill
            call: {func: lhc.UpdateFillInfo(), trigger: before_CONFIGURE}
          - name: check
            call: {func: 'testplugin.Test("fill " + fill_info_fill_number)', trigger: after_CONFIGURE}
        """,
    )
    async with Core.embedded(
        state_dir=tmp_path / "state", nodes=isolated_nodes(), repository=repo.repository, plugins=plugins
    ) as core:
        env = await core.new_environment("fill")
        await env.transition("CONFIGURE")
        assert plugins["testplugin"].recorded(env.id) == ["fill 9001"]  # type: ignore[attr-defined]
        await env.destroy()
