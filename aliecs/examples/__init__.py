"""Example task programs built on the aliecs OCC library (used by the packaged workflows)."""
