"""Workflow and task templates: loading their YAML, the `{{ }}` expression language, and expanding
workflow templates into role trees and tasks, following AliECS's semantics (ControlWorkflows corpus)."""
