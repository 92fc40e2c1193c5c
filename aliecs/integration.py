"""Kept for imports written before `aliecs.integrations` existed; use that package."""

from aliecs.integrations import TESTPLUGIN, CallContext, Plugin, TestPlugin, builtin_plugins

__all__ = ["TESTPLUGIN", "CallContext", "Plugin", "TestPlugin", "builtin_plugins"]
