"""The test suite's own layout: no test module imports another.

A helper that several modules need lives in a helper module (`tests/core_process.py`,
`tests/control_harness.py`, `tests/fakefarm_helpers.py`, ...): importing it from a test module
instead runs that module's imports and fixtures, ties the two modules' refactorings together and
hides where the helper belongs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _test_module(name: str) -> bool:
    """`tests.test_x` or `test_x` (the tests directory is on sys.path too)."""
    parts = name.split(".")
    return parts[-1].startswith("test_") and (len(parts) == 1 or parts[:-1] == ["tests"])


def imports_of_test_modules(source: str, where: str) -> Iterator[str]:
    """Each import of a test module in `source`, as `where:line: ...`."""
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            named = [f"{node.module}.{alias.name}" for alias in node.names]
            if _test_module(node.module) or any(map(_test_module, named)):
                yield f"{where}:{node.lineno}: imports from {node.module}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _test_module(alias.name):
                    yield f"{where}:{node.lineno}: imports {alias.name}"


def test_no_test_module_imports_another() -> None:
    found = [
        line
        for path in sorted(TESTS.rglob("*.py"))
        for line in imports_of_test_modules(path.read_text(), str(path.relative_to(TESTS.parent)))
    ]
    assert found == [], "move the shared helpers into a helper module:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from tests.test_coconut import coconut\n",
        "from test_coconut import coconut\n",
        "import tests.test_coconut\n",
        "from tests import test_coconut\n",
    ],
)
def test_the_scan_sees_each_spelling(source: str) -> None:
    assert len(list(imports_of_test_modules(source, "probe.py"))) == 1


def test_helper_modules_pass_the_scan() -> None:
    source = "from tests.core_process import coconut\nimport asyncio\n"
    assert list(imports_of_test_modules(source, "probe.py")) == []
