"""Integration plugins: the namespaces of functions that `call` roles invoke (`dcs.StartOfRun()`).

- `base`: the extension point (`Plugin`, `ServicePlugin`, `CallContext`, connection states).
- `loader`: plugins by name from the configuration, built-in or from `aliecs.plugins` entry points.
- `host`: the core starts, stops and lists its plugins.
- `dcs`, `trg`, `odc`, `ddsched`, `bookkeeping`: clients of the experiment's services, making each
  call as the original's plugins do; `testplugin` for tests.
"""

from aliecs.integrations.base import (
    CONNECTING,
    IDLE,
    READY,
    SHUTDOWN,
    TRANSIENT_FAILURE,
    CallContext,
    IntegrationError,
    Plugin,
    ServicePlugin,
)
from aliecs.integrations.host import PluginHost, ServiceInfo
from aliecs.integrations.loader import (
    ENTRY_POINT_GROUP,
    PluginConfigError,
    PluginSettings,
    available_plugins,
    load_plugins,
)
from aliecs.integrations.testplugin import TestPlugin


def builtin_plugins() -> dict[str, Plugin]:
    """The plugins an embedded core gets when it is given none: `testplugin` only (test harnesses),
    a new instance on every call, so each core records its own calls. `aliecs-core` loads exactly
    what its configuration lists instead."""
    return {TestPlugin.name: TestPlugin()}


__all__ = [
    "CONNECTING",
    "ENTRY_POINT_GROUP",
    "IDLE",
    "READY",
    "SHUTDOWN",
    "TRANSIENT_FAILURE",
    "CallContext",
    "IntegrationError",
    "Plugin",
    "PluginConfigError",
    "PluginHost",
    "PluginSettings",
    "ServiceInfo",
    "ServicePlugin",
    "TestPlugin",
    "available_plugins",
    "builtin_plugins",
    "load_plugins",
]
