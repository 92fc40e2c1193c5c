"""Just-in-time DPL sub-workflows: the `dpl.*` template functions.

In the original, `dpl.GenerateFromUri('x')` renders `jit/x` (a one-line DPL shell command), runs it
with `--o2-control jit-<sha1>` so that O2 writes `workflows/jit-<sha1>.yaml`, and returns that name,
which an `include:` then loads. O2 is rarely installed where templates are expanded, so generation
is pluggable: `CommandGenerator` runs the command when its programs exist, and otherwise uses an
exported workflow from a fallback repository (the ControlWorkflows history has exports for many
JIT names), or fails naming the JIT file and what is missing. Generated workflows are remembered in
a `JitRegistry` so that the following include resolves them without touching the repository.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aliecs.workflow.expr import Namespace, ScopeFunction, render
from aliecs.workflow.providers import ProviderError
from aliecs.workflow.repository import DirectoryRepository, SourceFile, TemplateRepository


@dataclass(frozen=True)
class JitRequest:
    """One generation request: the rendered DPL command and, for `*FromUri`, the JIT file name."""

    command: str
    uri: str = ""
    env_vars: str = ""

    @property
    def name(self) -> str:
        digest = hashlib.sha1((self.command + self.env_vars).encode()).hexdigest()
        return f"jit-{digest}"


class JitGenerator(Protocol):
    def generate(self, request: JitRequest) -> SourceFile: ...


@dataclass
class CommandGenerator:
    """Runs the DPL command when its programs are installed, else uses `fallback`'s exports.

    `fallback` is a repository whose `workflows/<uri>.yaml` (or `workflows/<jit name>.yaml`) is the
    exported sub-workflow; its `tasks/` hold the task descriptors the export loads.
    """

    fallback: TemplateRepository | None = None
    run_commands: bool = True
    timeout: float = 120.0

    def generate(self, request: JitRequest) -> SourceFile:
        if self.fallback is not None:
            for name in (request.uri, request.name):
                if name and name in self.fallback.list_workflows():
                    return self.fallback.read_workflow(name)
        programs = _programs(request.command)
        missing = [p for p in programs if shutil.which(p) is None]
        if self.run_commands and programs and not missing:
            return self._run(request)
        what = f"jit/{request.uri}" if request.uri else "inline DPL command"
        reason = f"{', '.join(missing)} not installed" if missing else "command execution disabled"
        raise ProviderError(
            f"cannot generate the DPL workflow for {what} ({reason}) and no exported workflow "
            f"named {request.uri or request.name!r} is in the fallback repository"
        )

    def _run(self, request: JitRequest) -> SourceFile:
        with tempfile.TemporaryDirectory(prefix="aliecs-jit-") as tmp:
            command = f"{request.command} --o2-control {request.name}"
            result = subprocess.run(
                command, shell=True, cwd=tmp, capture_output=True, text=True, timeout=self.timeout
            )
            produced = Path(tmp) / f"{request.name}.yaml"
            if result.returncode != 0 or not produced.is_file():
                tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
                raise ProviderError(f"DPL generation failed (exit {result.returncode}): {tail[0]}")
            return SourceFile(text=produced.read_text(), path=str(produced), identifier=request.name)


def _programs(command: str) -> list[str]:
    """The o2-* programs of a DPL pipeline (the ones that must be installed to generate)."""
    try:
        words = shlex.split(command, comments=False)
    except ValueError:
        words = command.split()
    return sorted({w for w in words if w.startswith("o2-")})


@dataclass
class JitRegistry:
    """Generated sub-workflows of one expansion, by the name the `dpl.*` call returned."""

    generator: JitGenerator
    generated: dict[str, tuple[SourceFile, TemplateRepository | None]] = field(default_factory=dict)

    def namespace(self, repository: TemplateRepository) -> Namespace:
        """`dpl.*` bound to the repository whose `jit/` files are read."""

        def env_vars(scope: Mapping[str, Any]) -> str:
            value = scope.get("jit_env_vars", "")
            return value if isinstance(value, str) else ""

        def generate(request: JitRequest) -> str:
            if request.name not in self.generated:
                source = self.generator.generate(request)
                fallback = getattr(self.generator, "fallback", None)
                self.generated[request.name] = (source, fallback)
            return request.name

        def from_uri(scope: Mapping[str, Any], uri: Any) -> str:
            text = read_jit(repository, str(uri))
            command = render(text.strip(), scope)
            return generate(JitRequest(command=command, uri=str(uri), env_vars=env_vars(scope)))

        def from_uri_or_template(scope: Mapping[str, Any], uri: Any) -> str:
            if not has_jit(repository, str(uri)):
                return str(uri)
            return from_uri(scope, uri)

        def inline(scope: Mapping[str, Any], command: Any) -> str:
            return generate(JitRequest(command=str(command), env_vars=env_vars(scope)))

        members = {
            "GenerateFromUri": ScopeFunction(from_uri, "GenerateFromUri"),
            "GenerateFromUriOrFallbackToTemplate": ScopeFunction(
                from_uri_or_template, "GenerateFromUriOrFallbackToTemplate"
            ),
            "Generate": ScopeFunction(inline, "Generate"),
        }
        return Namespace("dpl", members)

    def legacy_aliases(self, dpl: Namespace) -> dict[str, Any]:
        return {
            "GenerateDplSubworkflow": dpl["Generate"],
            "GenerateDplSubworkflowFromUri": dpl["GenerateFromUri"],
        }


def read_jit(repository: TemplateRepository, uri: str) -> str:
    reader = getattr(repository, "read_file", None)
    if reader is None:
        raise ProviderError(f"repository {repository.name} cannot read jit/ files")
    text = reader(f"jit/{uri}")
    if text is None:
        raise ProviderError(f"no JIT file jit/{uri} in repository {repository.name}")
    return str(text)


def has_jit(repository: TemplateRepository, uri: str) -> bool:
    reader = getattr(repository, "read_file", None)
    return reader is not None and reader(f"jit/{uri}") is not None


def fallback_repository(path: Path | None) -> DirectoryRepository | None:
    return DirectoryRepository(path, name=f"jit-fallback:{path}") if path is not None else None
