"""No module of aliecs/ or actors/ imports or uses a private name of a dependency.

A private name (`_x`, not `__x__`) of an installed package or of the standard library is whatever
its authors may change in any minor release; relying on one makes every upgrade a gamble. The scan
reads the source (AST) and finds, for every module:

- imports of a private module or name (`import pykka._future`, `from grpclib import _x`);
- attribute chains that start at an imported dependency and touch a private name
  (`ActorRegistry._actor_refs`, `asyncio._get_running_loop`), or at a parameter annotated with a
  dependency's class (`def recv(stream: Stream): stream._stream`);
- in a class that subclasses a dependency's class, methods or `self._x` uses whose name is one the
  dependency's class defines (`def _protocol_factory`, `self._stream`): overriding or reading a base
  class's private member is the same reliance, spelled differently.

Generated code (aliecs/generated/, written by betterproto's compiler against betterproto's base
classes) is left out: it is regenerated with the library it was generated for.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("aliecs", "actors")
SKIPPED = (ROOT / "aliecs" / "generated",)
OURS = {"aliecs", "actors", "tests", "bench"}
#: Underscore names the standard library documents as public API.
DOCUMENTED = {("os", "_exit"), ("sys", "_getframe")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _external(module: str) -> bool:
    top = module.split(".")[0]
    return bool(top) and top not in OURS


def _sources() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not any(path.is_relative_to(skipped) for skipped in SKIPPED):
                yield path


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _chain(node: ast.expr) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"], or None when the chain does not start at a plain name."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    names.append(node.id)
    return names[::-1]


def _private_members(cls: type) -> dict[str, str]:
    """Private names a dependency's class (or its bases) defines -> the class that has it."""
    return _base_private_members(cls, start=0)


def _base_private_members(cls: type, start: int = 1) -> dict[str, str]:
    """Private names defined by the dependency classes among `cls`'s bases -> the class that has it."""
    found: dict[str, str] = {}
    for base in cls.__mro__[start:]:
        module = getattr(base, "__module__", "") or ""
        if not _external(module) or module == "builtins":
            continue
        where = f"{module}.{base.__qualname__}"
        for name in _own_private_names(base):
            found.setdefault(name, where)
    return found


@functools.cache
def _own_private_names(cls: type) -> frozenset[str]:
    """Private names a class defines: in its dict, and as `self._x` anywhere in its source."""
    names = {name for name in vars(cls) if _private(name)}
    with contextlib.suppress(OSError, TypeError):  # a C class has no source: its dict is all
        names |= {name for name in re.findall(r"self\.(_\w+)", inspect.getsource(cls)) if _private(name)}
    return frozenset(names)


def _violations(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(ROOT)
    imported: dict[str, str] = {}  # local name -> the dependency module or object it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _external(alias.name):
                    if any(_private(part) for part in alias.name.split(".")):
                        yield f"{where}:{node.lineno}: imports private module {alias.name}"
                    local = alias.asname or alias.name.split(".")[0]
                    imported[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _external(node.module):
            if any(_private(part) for part in node.module.split(".")):
                yield f"{where}:{node.lineno}: imports from private module {node.module}"
            for alias in node.names:
                if _private(alias.name):
                    yield f"{where}:{node.lineno}: imports private name {node.module}.{alias.name}"
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = _chain(node)
            if chain is None or chain[0] not in imported:
                continue
            full = imported[chain[0]].split(".") + chain[1:]
            for index, part in enumerate(full):
                if _private(part) and (full[0], ".".join(full[index:])) not in DOCUMENTED:
                    yield f"{where}:{node.lineno}: uses private name {'.'.join(full)}"
                    break
    yield from _typed_parameter_uses(tree, imported, where)
    yield from _held_instance_uses(tree, imported, where)
    module = importlib.import_module(_module_name(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(module, node.name, None)
        if not isinstance(cls, type):
            continue
        members = _base_private_members(cls)
        if not members:
            continue
        for item in ast.walk(node):
            name = None
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item in node.body:
                name = item.name
                what = "overrides"
            elif (
                isinstance(item, ast.Attribute)
                and isinstance(item.value, ast.Name)
                and item.value.id == "self"
            ):
                name = item.attr
                what = "uses"
            if name is not None and name in members:
                yield f"{where}:{item.lineno}: {node.name} {what} {members[name]}'s private {name}"


def _typed_parameter_uses(tree: ast.AST, imported: dict[str, str], where: Path) -> Iterator[str]:
    """`def f(stream: Stream): stream._stream`: a parameter annotated with a dependency's class."""
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        typed: dict[str, str] = {}
        for arg in [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]:
            annotation = arg.annotation
            if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
                annotation = ast.parse(annotation.value, mode="eval").body
            if isinstance(annotation, ast.Subscript):
                annotation = annotation.value
            chain = _chain(annotation) if isinstance(annotation, ast.expr) else None
            if chain and chain[0] in imported:
                typed[arg.arg] = ".".join([imported[chain[0]], *chain[1:]])
        if not typed:
            continue
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in typed
                and _private(node.attr)
            ):
                cls = _resolve(typed[node.value.id])
                if isinstance(cls, type) and node.attr in _private_members(cls):
                    yield f"{where}:{node.lineno}: uses private name {typed[node.value.id]}.{node.attr}"


def _held_instance_uses(tree: ast.AST, imported: dict[str, str], where: Path) -> Iterator[str]:
    """`self.server = Server(...)` (or `self.server: Server`), then `self.server._server`."""
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        held: dict[str, str] = {}
        for node in ast.walk(cls):
            target: ast.expr | None = None
            kind: ast.expr | None = None
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.value, ast.Call):
                target, kind = node.targets[0], node.value.func
            elif isinstance(node, ast.AnnAssign):
                target, kind = node.target, node.annotation
            if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)):
                continue
            if target.value.id != "self" or kind is None:
                continue
            chain = _chain(kind)
            if chain and chain[0] in imported:
                held[target.attr] = ".".join([imported[chain[0]], *chain[1:]])
        if not held:
            continue
        for node in ast.walk(cls):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            owner = node.value
            if not (
                isinstance(owner, ast.Attribute)
                and isinstance(owner.value, ast.Name)
                and owner.value.id == "self"
                and owner.attr in held
            ):
                continue
            resolved = _resolve(held[owner.attr])
            if isinstance(resolved, type) and node.attr in _private_members(resolved):
                yield f"{where}:{node.lineno}: uses private name {held[owner.attr]}.{node.attr}"


def _resolve(dotted: str) -> object:
    """The object a dotted name stands for (module path, then attributes), or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            value = getattr(value, name, None)
        return value
    return None


def test_no_module_relies_on_a_private_name_of_a_dependency() -> None:
    found: list[str] = []
    for path in _sources():
        found.extend(dict.fromkeys(_violations(path)))  # a chain `a._b.c` is met once per attribute
    assert found == [], "private names of dependencies in use:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from pykka._envelope import Envelope\n", "imports from private module pykka._envelope"),
        ("import asyncio\nf = asyncio._get_running_loop\n", "uses private name asyncio._get_running_loop"),
        ("from pykka import ActorRegistry\nx = ActorRegistry._actor_refs\n", "ActorRegistry._actor_refs"),
        ("from pykka import _exceptions\n", "imports private name pykka._exceptions"),
        (
            "from grpclib.server import Server\nclass S(Server):\n    def _protocol_factory(self): ...\n",
            "S overrides grpclib.server.Server's private _protocol_factory",
        ),
        (
            "from grpclib.server import Stream\ndef f(stream: Stream[int, int]):\n    return stream._stream",
            "uses private name grpclib.server.Stream._stream",
        ),
        (
            "from grpclib.server import Server\nclass C:\n    def __init__(self):\n"
            "        self.server = Server([])\n    def port(self):\n        return self.server._server\n",
            "uses private name grpclib.server.Server._server",
        ),
        (
            "from grpclib.server import Stream\n"
            "class T(Stream):\n    def f(self):\n        return self._stream\n",
            "T uses grpclib.server.Stream's private _stream",
        ),
    ],
)
def test_the_scan_catches_each_kind_of_reliance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: str
) -> None:
    package = tmp_path / "aliecs_scan_probe"
    package.mkdir()
    probe = package / "probe.py"
    probe.write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    sys.modules.pop("aliecs_scan_probe.probe", None)
    found = list(_violations(probe))
    assert any(expected in line for line in found), found


def test_our_own_private_names_and_documented_ones_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "aliecs_scan_clean"
    package.mkdir()
    probe = package / "probe.py"
    probe.write_text(
        "import os\nfrom grpclib.server import Server\n"
        "class S(Server):\n    def __init__(self):\n        self._mine = 1\n"
        "    def _helper(self):\n        return self._mine\n"
        "def bye():\n    os._exit(0)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    sys.modules.pop("aliecs_scan_clean.probe", None)
    assert list(_violations(probe)) == []
