"""Where workflow templates and task descriptors come from.

A configuration repository holds `workflows/<name>.yaml` and `tasks/<name>.yaml`. This module defines
the interface the template engine reads through, and the plain-directory implementation used for the
packaged default repository. Git repositories pinned by revision implement the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aliecs.errors import UnknownWorkflowError


class TemplateNotFoundError(UnknownWorkflowError):
    pass


@dataclass(frozen=True)
class SourceFile:
    """The text of one template file plus the names used to refer to it in errors and identifiers."""

    text: str
    path: str  # shown in error messages
    identifier: str  # e.g. "<repo>/tasks/name@revision", stable for a given content


class TemplateRepository(Protocol):
    name: str

    def read_workflow(self, name: str) -> SourceFile: ...

    def read_task(self, name: str) -> SourceFile: ...

    def list_workflows(self) -> list[str]: ...

    def read_file(self, relpath: str) -> str | None:
        """Any file of the repository (e.g. `jit/<name>`), None when it does not exist."""
        ...


class DirectoryRepository:
    """A configuration repository read straight from a directory (the packaged `templates/`)."""

    def __init__(self, root: Path | str, name: str | None = None, revision: str = "local") -> None:
        self.root = Path(root)
        self.name = name or str(root)
        self.revision = revision

    def _read(self, kind: str, name: str) -> SourceFile:
        if not name or "/" in name or name.startswith("."):
            raise TemplateNotFoundError(f"invalid {kind[:-1]} name {name!r}")
        path = self.root / kind / f"{name}.yaml"
        if not path.is_file():
            available = ", ".join(self._names(kind)) or "none"
            raise TemplateNotFoundError(
                f"no {kind[:-1]} named {name!r} in repository {self.name} ({kind}/ has: {available})"
            )
        return SourceFile(
            text=path.read_text(),
            path=str(path),
            identifier=f"{self.name}/{kind}/{name}@{self.revision}",
        )

    def _names(self, kind: str) -> list[str]:
        folder = self.root / kind
        return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []

    def read_workflow(self, name: str) -> SourceFile:
        return self._read("workflows", name)

    def read_task(self, name: str) -> SourceFile:
        return self._read("tasks", name)

    def list_workflows(self) -> list[str]:
        return self._names("workflows")

    def read_file(self, relpath: str) -> str | None:
        path = (self.root / relpath).resolve()
        if self.root.resolve() not in path.parents or not path.is_file():
            return None
        return path.read_text()


def default_repository() -> DirectoryRepository:
    """The repository that ships with aliecs (the project's `templates/` directory)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "templates", here.parents[1] / "templates"):
        if (candidate / "workflows").is_dir():
            return DirectoryRepository(candidate, name="aliecs/templates")
    raise TemplateNotFoundError("the packaged default repository (templates/) was not found")
