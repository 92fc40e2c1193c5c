"""The core's side of its plugins: starting and stopping them, and what they report.

Starting never fails the core: a plugin whose `start` raises or takes longer than `START_TIMEOUT`
is marked TRANSIENT_FAILURE with the reason, and its calls fail with that reason (the original logs
"failed to connect" and carries on the same way). Plugins that are only a `Plugin` (in-process, such
as `testplugin`) have nothing to start and are always READY.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aliecs.events import EventBus
from aliecs.integrations.base import READY, TRANSIENT_FAILURE, Plugin, ServicePlugin

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
IN_PROCESS = "in-process"


@dataclass(frozen=True)
class ServiceInfo:
    """One loaded plugin as GetIntegratedServices and `coconut info` show it."""

    name: str
    pretty_name: str
    endpoint: str
    connection_state: str
    reason: str
    data: str  # JSON


class PluginHost:
    def __init__(self, plugins: Mapping[str, Plugin], bus: EventBus) -> None:
        self.plugins = dict(plugins)
        self.bus = bus
        self.started = False

    def _services(self) -> list[ServicePlugin]:
        return [plugin for plugin in self.plugins.values() if isinstance(plugin, ServicePlugin)]

    async def start(self) -> None:
        """Start every service plugin concurrently; failures are recorded on the plugin, not raised."""
        services = self._services()
        for plugin in services:
            plugin.publish = self.bus.publish
        await asyncio.gather(*(self._start(plugin) for plugin in services))
        self.started = True

    async def _start(self, plugin: ServicePlugin) -> None:
        try:
            await asyncio.wait_for(plugin.start(), START_TIMEOUT)
        except Exception as exc:
            reason = f"start failed: {exc or type(exc).__name__}"
            if isinstance(exc, TimeoutError):
                reason = f"start took longer than {START_TIMEOUT:g}s"
            plugin.set_state(TRANSIENT_FAILURE, reason)
            log.error(
                "plugin %s (%s): %s; its calls will fail until it connects",
                plugin.name,
                plugin.endpoint,
                reason,
            )
        else:
            log.info("plugin %s at %s: %s", plugin.name, plugin.endpoint, plugin.connection_state)

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        results = await asyncio.gather(
            *(plugin.stop() for plugin in self._services()), return_exceptions=True
        )
        for plugin, result in zip(self._services(), results, strict=True):
            if isinstance(result, BaseException):
                log.error("plugin %s: stop failed: %s", plugin.name, result)

    def services(self) -> list[ServiceInfo]:
        infos = []
        for name, plugin in self.plugins.items():
            if isinstance(plugin, ServicePlugin):
                infos.append(
                    ServiceInfo(
                        name=name,
                        pretty_name=plugin.pretty_name or name,
                        endpoint=plugin.endpoint,
                        connection_state=plugin.connection_state,
                        reason=plugin.state_reason,
                        data=json.dumps(plugin.data(), separators=(",", ":"), default=str),
                    )
                )
            else:
                infos.append(ServiceInfo(name, name, IN_PROCESS, READY, "", "{}"))
        return infos

    def environment_data(self, environment_id: str) -> dict[str, str]:
        """Per plugin (JSON), what it knows of one environment (`integratedServicesData`)."""
        found: dict[str, str] = {}
        for name, plugin in self.plugins.items():
            if isinstance(plugin, ServicePlugin):
                data = plugin.environment_data(environment_id)
                if data is not None:
                    found[name] = json.dumps(data, separators=(",", ":"), default=str)
        return found
