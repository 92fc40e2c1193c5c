"""Kept for imports written before `aliecs.integrations` existed; use that package."""

from aliecs.integrations import CallContext, Plugin, TestPlugin, builtin_plugins

__all__ = ["CallContext", "Plugin", "TestPlugin", "builtin_plugins"]
