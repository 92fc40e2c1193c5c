"""Loading plugins by name from the core's configuration, built-in or from installed packages.

The configuration is the original's: a list of plugin names (`integrationPlugins`) and, per plugin,
its endpoint (the original's `<plugin>...Endpoint` settings: `dcsServiceEndpoint`, `odcEndpoint`...).
`aliecs-core` takes them as `--integration-plugins dcs,trg` and `--plugin-endpoint dcs=HOST:PORT`.

Third parties ship plugins as Python packages with an entry point in the group `aliecs.plugins`:

    [project.entry-points."aliecs.plugins"]
    lhc = "mypackage.lhc:LhcPlugin"

The entry point's object is called with the configured endpoint ("" when none is set) and returns a
plugin (`aliecs.integrations.Plugin`, usually a `ServicePlugin` subclass, which then needs an
endpoint). A built-in name cannot be taken over by an entry point.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from aliecs.integrations.base import Plugin, ServicePlugin

ENTRY_POINT_GROUP = "aliecs.plugins"
MAX_PLUGINS = 64
MAX_ENDPOINT = 256
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

#: The plugins that come with aliecs: name -> "module:attribute".
BUILTIN: dict[str, str] = {
    "bookkeeping": "aliecs.integrations.bookkeeping:BookkeepingPlugin",
    "dcs": "aliecs.integrations.dcs:DcsPlugin",
    "ddsched": "aliecs.integrations.ddsched:DdSchedPlugin",
    "odc": "aliecs.integrations.odc:OdcPlugin",
    "testplugin": "aliecs.integrations.testplugin:TestPlugin",
    "trg": "aliecs.integrations.trg:TrgPlugin",
}


class PluginConfigError(ValueError):
    """The plugin configuration cannot be used; the message names the plugin and what to fix."""


@dataclass(frozen=True)
class PluginSettings:
    """Which plugins the core loads, and where each one's service is."""

    names: tuple[str, ...] = ()
    endpoints: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, names: Iterable[str], endpoints: Iterable[str]) -> PluginSettings:
        """From `dcs,trg` style lists and `name=endpoint` pairs (the command line's options)."""
        wanted: list[str] = []
        for text in names:
            for name in (part.strip() for part in text.split(",")):
                if name and name not in wanted:
                    wanted.append(_check_name(name, "--integration-plugins"))
        if len(wanted) > MAX_PLUGINS:
            raise PluginConfigError(f"--integration-plugins: {len(wanted)} plugins, at most {MAX_PLUGINS}")
        where: dict[str, str] = {}
        for pair in endpoints:
            name, sep, endpoint = pair.partition("=")
            if not sep or not endpoint.strip():
                raise PluginConfigError(f"--plugin-endpoint {pair[:80]!r}: expected NAME=HOST:PORT")
            name = _check_name(name.strip(), "--plugin-endpoint")
            if len(endpoint) > MAX_ENDPOINT:
                raise PluginConfigError(
                    f"--plugin-endpoint {name}: endpoint longer than {MAX_ENDPOINT} characters"
                )
            where[name] = endpoint.strip()
        unused = sorted(set(where) - set(wanted))
        if unused:
            raise PluginConfigError(
                f"--plugin-endpoint {unused[0]}: plugin not loaded (add it to --integration-plugins)"
            )
        return cls(tuple(wanted), where)


def _check_name(name: str, option: str) -> str:
    if not _NAME.fullmatch(name):
        raise PluginConfigError(f"{option}: {name[:80]!r} is not a plugin name (letters, digits, _)")
    return name


def available_plugins() -> dict[str, str]:
    """Every plugin name that can be loaded: built-in ones and installed entry points."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN}
    return {**BUILTIN, **dict(sorted(found.items()))}


def _factory(name: str) -> Callable[[str], Any]:
    if name in BUILTIN:
        module, _, attribute = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            return ep.load()  # type: ignore[no-any-return]
        except Exception as exc:
            raise PluginConfigError(f"plugin {name}: entry point {ep.value} cannot be loaded: {exc}") from exc
    known = ", ".join(available_plugins())
    raise PluginConfigError(f"no plugin named {name!r} (known: {known})")


def load_plugins(settings: PluginSettings) -> dict[str, Plugin]:
    """Instantiate the configured plugins (nothing connects before the core starts them)."""
    plugins: dict[str, Plugin] = {}
    for name in settings.names:
        factory = _factory(name)
        endpoint = settings.endpoints.get(name, "")
        if isinstance(factory, type) and issubclass(factory, ServicePlugin) and not endpoint:
            setting = f" (the original's {factory.endpoint_setting})" if factory.endpoint_setting else ""
            raise PluginConfigError(
                f"plugin {name} needs an endpoint: --plugin-endpoint {name}=HOST:PORT{setting}"
            )
        try:
            plugin = factory(endpoint)
        except PluginConfigError:
            raise
        except Exception as exc:
            raise PluginConfigError(f"plugin {name}: {exc}") from exc
        if not isinstance(plugin, Plugin):
            raise PluginConfigError(
                f"plugin {name}: {type(plugin).__name__} has no `name` and `functions(call)`"
            )
        if plugin.name != name:
            raise PluginConfigError(f"plugin {name}: the object loaded calls itself {plugin.name!r}")
        plugins[name] = plugin
    return plugins
