"""Regenerate the committed protobuf/gRPC Python code from ``protos/*.proto``.

The generated package ``aliecs.generated`` is committed so that installing aliecs never needs protoc.
``make protos`` runs this module to refresh it after a ``.proto`` edit, and the test suite runs it with
``--check`` so a stale commit is caught: the check regenerates into a temporary directory and compares
file by file, leaving the tree untouched.

Every ``.proto`` file under ``protos/`` is compiled in one protoc invocation, so files importing each
other (events.proto importing common.proto, ...) resolve, and new files are picked up without editing
this module. Output is betterproto (dataclass messages) with grpclib stubs and service bases.

Determinism: protoc is given the files in sorted order, the betterproto plugin formats its output with
black and isort, and the package ``__init__.py`` is written by us with fixed content. Each generated
module gets a ``# mypy: ignore-errors`` first line (see MYPY_HEADER). The output does
depend on the installed betterproto, black and isort versions, which is why the project pins them.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROTOS_DIR = REPO_ROOT / "protos"
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "generated"
PLUGIN_NAME = "protoc-gen-python_betterproto"

PACKAGE_INIT = '''"""Code generated from protos/*.proto by ``make protos`` (python -m aliecs.protos_build).

Do not edit: change the .proto file and regenerate. A test fails when this package is stale.
"""
'''


# betterproto's output is not mypy-clean (e.g. it passes ``Optional`` requests to handlers), and the
# project's mypy run follows imports into it; an inline flag keeps it out of type checking without
# touching the project configuration.
MYPY_HEADER = "# mypy: ignore-errors\n"


class ProtoBuildError(RuntimeError):
    """Code generation could not run (missing plugin, protoc error); the message says what to fix."""


def find_proto_files(protos_dir: Path) -> list[Path]:
    """All .proto files below ``protos_dir``, relative to it, sorted for a stable protoc command line."""
    return sorted(p.relative_to(protos_dir) for p in protos_dir.rglob("*.proto"))


def _find_plugin() -> str:
    """Locate the betterproto protoc plugin, preferring the one next to the running interpreter.

    ``make protos`` runs ``.venv/bin/python`` without activating the venv, so the plugin is usually not on
    PATH; looking beside ``sys.executable`` finds it anyway.
    """
    beside = Path(sys.executable).parent / PLUGIN_NAME
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(PLUGIN_NAME)
    if found is None:
        raise ProtoBuildError(
            f"{PLUGIN_NAME} not found next to {sys.executable} nor on PATH; "
            "install the dev extras: pip install -e '.[dev]' (betterproto[compiler])"
        )
    return found


def _well_known_include() -> str:
    """Directory holding google/protobuf/*.proto as shipped by grpcio-tools."""
    return str(importlib.resources.files("grpc_tools") / "_proto")


def generate(protos_dir: Path, out_dir: Path) -> list[Path]:
    """Compile every proto under ``protos_dir`` into ``out_dir`` (which must exist and be empty).

    Returns the generated files relative to ``out_dir``.
    """
    protos = find_proto_files(protos_dir)
    if not protos:
        raise ProtoBuildError(f"no .proto files found under {protos_dir}")
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{protos_dir}",
        f"-I{_well_known_include()}",
        f"--plugin={PLUGIN_NAME}={_find_plugin()}",
        f"--python_betterproto_out={out_dir}",
        *(str(p) for p in protos),
    ]
    # A fixed hash seed keeps any set/dict iteration inside the plugin from reordering output.
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, cwd=protos_dir, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ProtoBuildError(
            f"protoc failed (exit {proc.returncode}) on {', '.join(map(str, protos))}:\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    for module in out_dir.rglob("*.py"):
        module.write_text(MYPY_HEADER + module.read_text())
    (out_dir / "__init__.py").write_text(PACKAGE_INIT)
    return _list_files(out_dir)


def _list_files(root: Path) -> list[Path]:
    """Generated source files below ``root`` (bytecode caches excluded), relative and sorted."""
    return sorted(
        p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )


def diff_trees(expected: Path, actual: Path) -> list[str]:
    """Describe every file that differs between the fresh output ``expected`` and the tree ``actual``."""
    want = set(_list_files(expected))
    have = set(_list_files(actual)) if actual.is_dir() else set()
    problems: list[str] = []
    for rel in sorted(want | have):
        if rel not in have:
            problems.append(f"missing: {rel}")
        elif rel not in want:
            problems.append(f"stale (no longer generated): {rel}")
        elif not filecmp.cmp(expected / rel, actual / rel, shallow=False):
            problems.append(f"differs: {rel}")
    return problems


def _install(fresh: Path, out_dir: Path) -> list[str]:
    """Make ``out_dir`` equal to ``fresh``, touching only files that change; returns what changed."""
    changes: list[str] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for rel in _list_files(fresh):
        target = out_dir / rel
        if not target.exists():
            changes.append(f"created: {rel}")
        elif not filecmp.cmp(fresh / rel, target, shallow=False):
            changes.append(f"updated: {rel}")
        else:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fresh / rel, target)
    wanted = set(_list_files(fresh))
    for rel in _list_files(out_dir):
        if rel not in wanted:
            (out_dir / rel).unlink()
            changes.append(f"removed: {rel}")
    # Drop directories emptied by the removal above (deepest first); keep cache-only dirs alone.
    for d in sorted((p for p in out_dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if d.name != "__pycache__" and not any(d.iterdir()):
            d.rmdir()
    return changes


def build(protos_dir: Path = DEFAULT_PROTOS_DIR, out_dir: Path = DEFAULT_OUT_DIR, check: bool = False) -> int:
    """Regenerate (or, with ``check``, verify) ``out_dir``; returns a process exit code."""
    with tempfile.TemporaryDirectory(prefix="aliecs-protos-") as tmp:
        fresh = Path(tmp)
        try:
            generate(protos_dir, fresh)
        except ProtoBuildError as exc:
            print(f"protos_build: {exc}", file=sys.stderr)
            return 2
        if check:
            problems = diff_trees(fresh, out_dir)
            if problems:
                print(
                    f"protos_build: {out_dir} is out of date with {protos_dir}; run `make protos`:",
                    file=sys.stderr,
                )
                for line in problems:
                    print(f"  {line}", file=sys.stderr)
                return 1
            print(f"protos_build: {out_dir} is up to date")
            return 0
        changes = _install(fresh, out_dir)
    if changes:
        for line in changes:
            print(f"protos_build: {line}")
    else:
        print(f"protos_build: {out_dir} already up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aliecs.protos_build",
        description="Generate betterproto/grpclib code for protos/*.proto into aliecs/generated/.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temporary directory and exit 1 listing the files that would change",
    )
    parser.add_argument(
        "--protos-dir", type=Path, default=DEFAULT_PROTOS_DIR, help="where the .proto files are"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="the generated package directory"
    )
    args = parser.parse_args(argv)
    return build(args.protos_dir.resolve(), args.out_dir.resolve(), check=args.check)


if __name__ == "__main__":
    sys.exit(main())
