"""Configuration repositories: git repositories of workflow templates and task descriptors.

The original clones each repository once and checks the shared working tree out at the revision a
template asks for, under a global mutex, so two environments can never use two revisions at once.
Here every repository is a bare clone (dulwich) in the state directory, and files are read straight
from git objects at a resolved commit (`GitRepository`), so any number of revisions are in use
concurrently and nothing is ever checked out.

Identifiers follow the original: a URL without its scheme (`github.com/AliceO2Group/ControlWorkflows`)
or an absolute local path. A template is named `[repo/workflows/]name[@revision]`; a revision is a
branch, tag or commit hash, resolved against the remote's branches first, then local refs. The
repository list, the default repository and the default revisions (global and per repository)
persist in `<state>/repos/state.json`. A plain directory (the packaged `templates/`) is a
repository kind too, with the single revision "local".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dulwich import porcelain
from dulwich.errors import NotGitRepository
from dulwich.objects import Commit, Tag, Tree
from dulwich.repo import Repo

from aliecs.errors import AliecsError
from aliecs.workflow.repository import (
    DirectoryRepository,
    SourceFile,
    TemplateNotFoundError,
    TemplateRepository,
    default_repository,
)
from aliecs.workflow.yamlsource import PublicScalar, PublicVar, TemplateSourceError, load_yaml

STATE_FILE = "state.json"
FALLBACK_REVISIONS = ("master", "main")
_HEX = re.compile(r"[0-9a-f]{4,40}")


class RepositoryError(AliecsError):
    """A repository cannot be added, found, fetched or read at the requested revision."""


def identifier_of(location: str) -> str:
    """The original's repository identifier: the URL without scheme and `.git`, or the absolute path."""
    text = location.strip()
    for scheme in ("https://", "http://", "ssh://", "git://", "file://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    else:
        if not re.match(r"^[\w.-]+:", text):  # a local path (not `host:path` ssh syntax)
            text = str(Path(text).expanduser().resolve())
    text = text.rstrip("/")
    return text[:-4] if text.endswith(".git") else text


@dataclass
class RepoInfo:
    """One configured repository (persisted)."""

    identifier: str
    url: str
    kind: str = "git"  # "git" or "directory"
    default_revision: str = ""
    clone_dir: str = ""  # relative to the repos directory


@dataclass(frozen=True)
class VarSpec:
    """A public variable as the GUI reads it (core/repos/repoutils.go VarSpec)."""

    defaultValue: str
    type: str = ""
    label: str = ""
    description: str = ""
    widget: str = ""
    panel: str = ""
    allowedValues: tuple[str, ...] = ()
    index: int = 0
    visibleIf: str = ""
    enabledIf: str = ""
    rows: int = 0

    @classmethod
    def of(cls, var: PublicVar) -> VarSpec:
        def number(text: str) -> int:
            try:
                return int(text)
            except ValueError:
                return 0

        return cls(
            defaultValue=var.value,
            type=var.type,
            label=var.label,
            description=var.description,
            widget=var.widget,
            panel=var.panel,
            allowedValues=tuple(str(v) for v in var.values),
            index=number(var.index),
            visibleIf=var.visibleif,
            enabledIf=var.enabledif,
            rows=number(var.rows),
        )


@dataclass(frozen=True)
class TemplateInfo:
    repository: str
    name: str
    revision: str
    public: bool
    description: str
    variables: dict[str, VarSpec] = field(default_factory=dict)


class GitRepository:
    """A repository pinned to one commit; files are read from git objects, never checked out."""

    def __init__(self, path: Path, identifier: str, revision: str, commit: bytes) -> None:
        self.path = path
        self.name = identifier
        self.revision = revision
        self.commit = commit.decode()
        self._lock = threading.Lock()

    def _blob(self, relpath: str) -> bytes | None:
        with self._lock, _open(self.path) as repo:
            obj: Any = repo[self.commit.encode()]
            tree = repo[obj.tree]
            for part in relpath.strip("/").split("/"):
                if not isinstance(tree, Tree):
                    return None
                try:
                    _mode, sha = tree[part.encode()]
                except KeyError:
                    return None
                tree = repo[sha]
            return tree.as_raw_string() if not isinstance(tree, Tree) else None

    def _names(self, folder: str) -> list[str]:
        with self._lock, _open(self.path) as repo:
            obj: Any = repo[self.commit.encode()]
            tree = repo[obj.tree]
            try:
                _mode, sha = tree[folder.encode()]  # type: ignore[index]
            except KeyError:
                return []
            sub = repo[sha]
            if not isinstance(sub, Tree):
                return []
            return sorted(e.path.decode()[:-5] for e in sub.iteritems() if e.path.endswith(b".yaml"))

    def has_folder(self, folder: str) -> bool:
        with self._lock, _open(self.path) as repo:
            obj: Any = repo[self.commit.encode()]
            tree: Any = repo[obj.tree]
            try:
                tree[folder.encode()]
            except KeyError:
                return False
            return True

    def _read(self, folder: str, name: str) -> SourceFile:
        if not name or "/" in name or name.startswith("."):
            raise TemplateNotFoundError(f"invalid {folder[:-1]} name {name!r}")
        data = self._blob(f"{folder}/{name}.yaml")
        if data is None:
            available = ", ".join(self._names(folder)) or "none"
            raise TemplateNotFoundError(
                f"no {folder[:-1]} named {name!r} in repository {self.name}@{self.revision} "
                f"({folder}/ has: {available})"
            )
        return SourceFile(
            text=data.decode(),
            path=f"{self.name}/{folder}/{name}.yaml@{self.revision}",
            identifier=f"{self.name}/{folder}/{name}@{self.commit}",
        )

    def read_workflow(self, name: str) -> SourceFile:
        return self._read("workflows", name)

    def read_task(self, name: str) -> SourceFile:
        return self._read("tasks", name)

    def list_workflows(self) -> list[str]:
        return self._names("workflows")

    def read_file(self, relpath: str) -> str | None:
        data = self._blob(relpath)
        return None if data is None else data.decode()


@contextmanager
def _open(path: Path) -> Iterator[Repo]:
    repo = Repo(str(path))
    try:
        yield repo
    finally:
        repo.close()


def _resolve_commit(repo: Repo, revision: str) -> bytes | None:
    """A branch (remote first), tag or commit hash to the commit it names."""
    rev = revision.encode()
    refs: Any = repo.refs.as_dict()
    for ref in (b"refs/remotes/origin/" + rev, b"refs/heads/" + rev, b"refs/tags/" + rev):
        if ref in refs:
            obj: Any = repo[refs[ref]]
            while isinstance(obj, Tag):
                obj = repo[obj.object[1]]
            return obj.id if isinstance(obj, Commit) else None
    store: Any = repo.object_store
    if _HEX.fullmatch(revision):
        if len(revision) == 40 and rev in store:
            obj = repo[rev]
            return obj.id if isinstance(obj, Commit) else None
        matches = [sha for sha in store if sha.startswith(rev)]
        commits = [sha for sha in matches if isinstance(repo[sha], Commit)]
        if len(commits) == 1:
            return commits[0]
    return None


class RepoManager:
    """The configured repositories of one core, persisted in `<state_dir>/repos/`."""

    def __init__(self, state_dir: Path, *, packaged: DirectoryRepository | None = None) -> None:
        self.root = state_dir / "repos"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.repos: list[RepoInfo] = []
        self.default = ""
        self.global_default_revision = "master"
        packaged = packaged or default_repository()
        self._packaged = packaged
        if not self._load():
            self.repos = [RepoInfo(packaged.name, str(packaged.root), kind="directory")]
            self.default = packaged.name
            self._save()

    # -- persistence -----------------------------------------------------------------------------

    def _load(self) -> bool:
        path = self.root / STATE_FILE
        if not path.is_file():
            return False
        data = json.loads(path.read_text())
        self.repos = [RepoInfo(**entry) for entry in data.get("repos", [])]
        self.default = str(data.get("default", ""))
        self.global_default_revision = str(data.get("global_default_revision", "master"))
        return True

    def _save(self) -> None:
        data = {
            "repos": [asdict(info) for info in self.repos],
            "default": self.default,
            "global_default_revision": self.global_default_revision,
        }
        tmp = self.root / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.root / STATE_FILE)

    # -- management ------------------------------------------------------------------------------

    def list_repos(self) -> list[RepoInfo]:
        with self._lock:
            return list(self.repos)

    def find(self, key: str | int) -> RepoInfo:
        """A repository by index in the list or by identifier."""
        with self._lock:
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                index = int(key)
                if not 0 <= index < len(self.repos):
                    raise RepositoryError(f"no repository at index {index} ({len(self.repos)} configured)")
                return self.repos[index]
            ident = identifier_of(key) if key.startswith(("/", "~", ".")) or "://" in key else key.rstrip("/")
            for info in self.repos:
                if info.identifier == ident:
                    return info
            known = ", ".join(info.identifier for info in self.repos) or "none"
            raise RepositoryError(f"no repository {key!r} (configured: {known})")

    def add(self, location: str, default_revision: str = "") -> RepoInfo:
        """Clone (or register a plain directory); nothing is kept if validation fails."""
        ident = identifier_of(location)
        with self._lock:
            if any(info.identifier == ident for info in self.repos):
                raise RepositoryError(f"repository {ident} is already configured")
            local = Path(location).expanduser()
            if "://" not in location and local.is_dir() and not _is_git(local):
                if not (local / "workflows").is_dir() or not (local / "tasks").is_dir():
                    raise RepositoryError(f"{location}: a repository needs workflows/ and tasks/")
                info = RepoInfo(ident, str(local.resolve()), kind="directory")
            else:
                info = self._clone(location, ident, default_revision)
            self.repos.append(info)
            self._save()
            return info

    def _clone(self, location: str, ident: str, default_revision: str) -> RepoInfo:
        url = str(Path(location).expanduser().resolve()) if Path(location).expanduser().is_dir() else location
        clone_dir = re.sub(r"[^\w.-]+", "_", ident).strip("_")
        target = self.root / clone_dir
        staging = Path(tempfile.mkdtemp(prefix=".clone-", dir=self.root))
        try:
            try:
                with open(os.devnull, "wb") as quiet:
                    repo = porcelain.clone(
                        url, str(staging / "git"), bare=True, checkout=False, errstream=quiet
                    )
                repo.close()
            except Exception as exc:
                raise RepositoryError(f"cannot fetch repository {location}: {_one_line(exc)}") from exc
            info = RepoInfo(ident, url, default_revision=default_revision, clone_dir=clone_dir)
            revision = self._default_revision_for(info, staging / "git")
            checked = self._git(staging / "git", ident, revision)
            if not checked.has_folder("workflows") or not checked.has_folder("tasks"):
                raise RepositoryError(f"{location}@{revision}: a repository needs workflows/ and tasks/")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / "git", target)
            return info
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def remove(self, key: str | int) -> RepoInfo:
        with self._lock:
            info = self.find(key)
            self.repos.remove(info)
            if self.default == info.identifier:
                self.default = self.repos[0].identifier if self.repos else ""
            self._save()
            if info.kind == "git" and info.clone_dir:
                shutil.rmtree(self.root / info.clone_dir, ignore_errors=True)
            return info

    def refresh(self, key: str | int | None = None) -> None:
        """Fetch new commits (all repositories when `key` is None)."""
        with self._lock:
            targets = self.list_repos() if key is None else [self.find(key)]
        for info in targets:
            if info.kind != "git":
                continue
            try:
                with _open(self.root / info.clone_dir) as repo, open(os.devnull, "wb") as quiet:
                    porcelain.fetch(repo, info.url, errstream=quiet)
                    result = porcelain.ls_remote(info.url)
                    remote_refs: Any = getattr(result, "refs", result)
                    for ref, sha in remote_refs.items():
                        if ref.startswith(b"refs/heads/") and sha is not None:
                            repo.refs[b"refs/remotes/origin/" + ref[len(b"refs/heads/") :]] = sha
                        elif ref.startswith(b"refs/tags/") and sha is not None and not ref.endswith(b"^{}"):
                            repo.refs[ref] = sha
            except Exception as exc:
                raise RepositoryError(
                    f"cannot refresh repository {info.identifier}: {_one_line(exc)}"
                ) from exc

    def set_default(self, key: str | int) -> None:
        with self._lock:
            self.default = self.find(key).identifier
            self._save()

    def set_global_default_revision(self, revision: str) -> None:
        with self._lock:
            self.global_default_revision = revision
            self._save()

    def set_default_revision(self, key: str | int, revision: str) -> None:
        with self._lock:
            info = self.find(key)
            if info.kind == "git":
                self.repository(info.identifier, revision)  # must exist
            info.default_revision = revision
            self._save()

    # -- reading ---------------------------------------------------------------------------------

    def _default_revision_for(self, info: RepoInfo, path: Path | None = None) -> str:
        """Explicit per-repository default, then the global default, then master, then main."""
        candidates = [info.default_revision, self.global_default_revision, *FALLBACK_REVISIONS]
        with _open(path or self.root / info.clone_dir) as repo:
            for revision in candidates:
                if revision and _resolve_commit(repo, revision) is not None:
                    return revision
        raise RepositoryError(
            f"repository {info.identifier}: none of the default revisions "
            f"{', '.join(r for r in candidates if r)} exists"
        )

    def _git(self, path: Path, ident: str, revision: str) -> GitRepository:
        with _open(path) as repo:
            commit = _resolve_commit(repo, revision)
        if commit is None:
            raise RepositoryError(f"repository {ident} has no revision {revision!r}")
        return GitRepository(path, ident, revision, commit)

    def repository(self, key: str | None = None, revision: str = "") -> TemplateRepository:
        """The repository `key` (default: the default repository) at `revision` (default: its own)."""
        info = self.find(key if key is not None else self.default)
        if info.kind == "directory":
            if revision and revision != "local":
                raise RepositoryError(
                    f"repository {info.identifier} is a directory: it has no revision {revision!r}"
                )
            if info.identifier == self._packaged.name:
                return self._packaged
            return DirectoryRepository(Path(info.url), name=info.identifier)
        revision = revision or self._default_revision_for(info)
        return self._git(self.root / info.clone_dir, info.identifier, revision)

    def resolve(self, template: str, folder: str = "workflows") -> tuple[TemplateRepository, str]:
        """`[repo/<folder>/]name[@revision]` to (repository at that revision, bare name)."""
        reference, _, revision = template.partition("@")
        marker = f"/{folder}/"
        if marker in reference:
            repo_part, _, name = reference.rpartition(marker)
            return self.repository(repo_part, revision), name
        if "/" in reference:
            raise RepositoryError(f"{template!r}: expected [repo/{folder}/]name[@revision]")
        return self.repository(None, revision), reference

    def resolver(
        self, current: TemplateRepository, reference: str, folder: str
    ) -> tuple[TemplateRepository, str]:
        """For the template engine: unqualified names stay in `current` (at another revision with `@`)."""
        name, _, revision = reference.partition("@")
        if f"/{folder}/" not in name:
            if "/" in name:
                raise RepositoryError(f"{reference!r}: expected [repo/{folder}/]name[@revision]")
            if not revision:
                return current, name
            return self.repository(current.name, revision), name
        return self.resolve(reference, folder)

    def templates(
        self, key: str | None = None, revision: str = "", all_templates: bool = True
    ) -> list[TemplateInfo]:
        """The workflow templates of a repository at a revision, with their public variables."""
        repository = self.repository(key, revision)
        rev = getattr(repository, "revision", revision or "local")
        found = []
        for name in repository.list_workflows():
            source = repository.read_workflow(name)
            try:
                document = load_yaml(source.text, source.path)
            except TemplateSourceError:
                continue
            if not isinstance(document, dict):
                continue
            public = isinstance(document.get("name"), PublicScalar)
            if not (public or all_templates):
                continue
            variables: dict[str, VarSpec] = {}
            for layer in ("defaults", "vars"):
                entries = document.get(layer)
                if isinstance(entries, dict):
                    for var_name, value in entries.items():
                        if isinstance(value, PublicVar):
                            variables[str(var_name)] = VarSpec.of(value)
            description = document.get("description", "")
            found.append(
                TemplateInfo(
                    repository=repository.name,
                    name=name,
                    revision=str(rev),
                    public=public,
                    description=str(description) if isinstance(description, str) else "",
                    variables=variables,
                )
            )
        return found


def _is_git(path: Path) -> bool:
    try:
        Repo(str(path)).close()
    except NotGitRepository:
        return False
    return True


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
