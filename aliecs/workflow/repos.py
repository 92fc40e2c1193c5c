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

import fnmatch
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
DIRECTORY_REVISION = "local"  # the one revision of a plain directory repository
_HEX = re.compile(r"[0-9a-f]{4,40}")


class RepositoryError(AliecsError):
    """A repository cannot be added, found, fetched or read at the requested revision."""


class UnknownRepositoryError(RepositoryError):
    """No configured repository has this index or identifier."""


class UnknownRevisionError(RepositoryError):
    """The repository has no branch, tag or commit of this name."""


class RepositoryExistsError(RepositoryError):
    """The repository is already configured (add it once, refresh it to update)."""


class RepositoryFetchError(RepositoryError):
    """The repository's URL cannot be cloned or fetched."""


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
            self.repos = [self._packaged_info()]
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
        if not any(info.identifier == self._packaged.name for info in self.repos):
            # The packaged repository always exists, as the original always adds its default repo.
            self.repos.insert(0, self._packaged_info())
        if not any(info.identifier == self.default for info in self.repos):
            self.default = self.repos[0].identifier
        return True

    def _packaged_info(self) -> RepoInfo:
        return RepoInfo(self._packaged.name, str(self._packaged.root), kind="directory")

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
                    raise UnknownRepositoryError(
                        f"no repository at index {index} ({len(self.repos)} configured, "
                        f"indexes 0-{len(self.repos) - 1})"
                    )
                return self.repos[index]
            ident = identifier_of(key) if key.startswith(("/", "~", ".")) or "://" in key else key.rstrip("/")
            for info in self.repos:
                if info.identifier == ident:
                    return info
            known = ", ".join(info.identifier for info in self.repos) or "none"
            raise UnknownRepositoryError(f"no repository {key!r} (configured: {known})")

    def add(self, location: str, default_revision: str = "") -> RepoInfo:
        """Clone (or register a plain directory); nothing is kept if validation fails.

        The clone runs without the manager's lock, so environments keep resolving templates
        while a slow remote is fetched; the repository joins the list only once it is complete.
        """
        ident = identifier_of(location)
        self._check_new(ident)
        local = Path(location).expanduser()
        if "://" not in location and local.is_dir() and not _is_git(local):
            if not (local / "workflows").is_dir() or not (local / "tasks").is_dir():
                raise RepositoryError(f"{location}: a repository needs workflows/ and tasks/")
            _check_directory_revision(ident, default_revision)
            return self._register(RepoInfo(ident, str(local.resolve()), kind="directory"))
        with self._staged_clone(location, ident, default_revision) as (info, staged):
            return self._register(info, staged)

    def _check_new(self, ident: str) -> None:
        if any(info.identifier == ident for info in self.list_repos()):
            raise RepositoryExistsError(f"repository {ident} is already configured")

    def _register(self, info: RepoInfo, staged: Path | None = None) -> RepoInfo:
        with self._lock:
            self._check_new(info.identifier)  # another add may have won the race meanwhile
            if staged is not None:
                target = self.root / info.clone_dir
                if target.exists():
                    shutil.rmtree(target)
                os.replace(staged, target)
            self.repos.append(info)
            self._save()
            return info

    @contextmanager
    def _staged_clone(
        self, location: str, ident: str, default_revision: str
    ) -> Iterator[tuple[RepoInfo, Path]]:
        """A validated bare clone in a staging directory, removed on exit unless moved away."""
        url = str(Path(location).expanduser().resolve()) if Path(location).expanduser().is_dir() else location
        clone_dir = re.sub(r"[^\w.-]+", "_", ident).strip("_")
        staging = Path(tempfile.mkdtemp(prefix=".clone-", dir=self.root))
        try:
            try:
                with open(os.devnull, "wb") as quiet:
                    repo = porcelain.clone(
                        url, str(staging / "git"), bare=True, checkout=False, errstream=quiet
                    )
                repo.close()
            except Exception as exc:
                raise RepositoryFetchError(f"cannot fetch repository {location}: {_one_line(exc)}") from exc
            info = RepoInfo(ident, url, default_revision=default_revision, clone_dir=clone_dir)
            if default_revision:
                self._git(staging / "git", ident, default_revision)  # an explicit one must exist
            revision = self._default_revision_for(info, staging / "git")
            checked = self._git(staging / "git", ident, revision)
            if not checked.has_folder("workflows") or not checked.has_folder("tasks"):
                raise RepositoryError(f"{location}@{revision}: a repository needs workflows/ and tasks/")
            yield info, staging / "git"
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def remove(self, key: str | int) -> RepoInfo:
        with self._lock:
            info = self.find(key)
            if info.identifier == self._packaged.name:
                raise RepositoryError(
                    f"repository {info.identifier} ships with aliecs and cannot be removed; "
                    "make another repository the default instead"
                )
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
                raise RepositoryFetchError(
                    f"cannot refresh repository {info.identifier}: {_one_line(exc)}"
                ) from exc

    def set_default(self, key: str | int) -> None:
        with self._lock:
            self.default = self.find(key).identifier
            self._save()

    def set_global_default_revision(self, revision: str) -> None:
        """Used by every repository without its own default revision (when it has that revision)."""
        if not revision.strip():
            raise RepositoryError("the global default revision cannot be empty (e.g. master)")
        with self._lock:
            self.global_default_revision = revision.strip()
            self._save()

    def set_default_revision(self, key: str | int, revision: str) -> None:
        """One repository's default revision; it must exist. Empty clears it (global default)."""
        with self._lock:
            info = self.find(key)
            if info.kind == "git" and revision:
                self.repository(info.identifier, revision)  # must exist
            elif info.kind == "directory":
                _check_directory_revision(info.identifier, revision)
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
        raise UnknownRevisionError(
            f"repository {info.identifier}: none of the default revisions "
            f"{', '.join(r for r in candidates if r)} exists"
        )

    def _git(self, path: Path, ident: str, revision: str) -> GitRepository:
        with _open(path) as repo:
            commit = _resolve_commit(repo, revision)
        if commit is None:
            raise UnknownRevisionError(f"repository {ident} has no revision {revision!r}")
        return GitRepository(path, ident, revision, commit)

    def repository(self, key: str | None = None, revision: str = "") -> TemplateRepository:
        """The repository `key` (default: the default repository) at `revision` (default: its own)."""
        info = self.find(key if key is not None else self.default)
        if info.kind == "directory":
            _check_directory_revision(info.identifier, revision)
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

    def elsewhere(self, name: str) -> list[str]:
        """Qualified names (`repo/workflows/name`) of workflow `name` in the non-default repositories
        at their default revisions: what to suggest when an unqualified name is not found."""
        found = []
        for info in self.list_repos():
            if info.identifier == self.default:
                continue
            try:
                if name in self.repository(info.identifier).list_workflows():
                    found.append(f"{info.identifier}/workflows/{name}")
            except RepositoryError:
                continue  # a repository that cannot be read now just gives no suggestion
        return found

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

    def default_revision(self, key: str | int | None = None) -> str:
        """The revision a reference without `@revision` uses in this repository (see `add`)."""
        info = self.find(key if key is not None else self.default)
        if info.kind == "directory":
            return DIRECTORY_REVISION
        return self._default_revision_for(info)

    def revisions(self, key: str | int) -> tuple[list[str], list[str]]:
        """The branches and the tags of a repository (a directory has the one branch "local")."""
        info = self.find(key)
        if info.kind == "directory":
            return [DIRECTORY_REVISION], []
        with _open(self.root / info.clone_dir) as repo:
            refs: Any = repo.refs.as_dict()
        remote, tag = b"refs/remotes/origin/", b"refs/tags/"
        branches = {
            ref[len(remote) :].decode() for ref in refs if ref.startswith(remote) and ref != remote + b"HEAD"
        }
        tags = {ref[len(tag) :].decode() for ref in refs if ref.startswith(tag)}
        return sorted(branches), sorted(tags)

    def catalogue(
        self,
        repo_pattern: str = "",
        revision_pattern: str = "",
        all_branches: bool = False,
        all_tags: bool = False,
        all_workflows: bool = False,
    ) -> list[TemplateInfo]:
        """Templates of every repository matching `repo_pattern` at the matching revisions.

        Patterns are shell globs (empty: everything). Without a revision pattern each repository
        is listed at its default revision, or at every branch (`all_branches`) / tag (`all_tags`);
        a glob pattern picks among the branches and tags, a plain one names a revision (or a
        commit) and repositories that lack it are skipped. Only public templates unless
        `all_workflows`.
        """
        found: list[TemplateInfo] = []
        for info in self.list_repos():
            if repo_pattern and not fnmatch.fnmatchcase(info.identifier, repo_pattern):
                continue
            for revision in self._revisions_to_list(info, revision_pattern, all_branches, all_tags):
                found += self.templates(info.identifier, revision, all_workflows)
        return found

    def _revisions_to_list(
        self, info: RepoInfo, pattern: str, all_branches: bool, all_tags: bool
    ) -> list[str]:
        if not pattern and not (all_branches or all_tags):
            return [self.default_revision(info.identifier)]
        branches, tags = self.revisions(info.identifier)
        if pattern and not any(char in pattern for char in "*?["):
            if info.kind == "directory":
                return [pattern] if pattern == DIRECTORY_REVISION else []
            with _open(self.root / info.clone_dir) as repo:
                return [pattern] if _resolve_commit(repo, pattern) is not None else []
        pool = (branches if all_branches else []) + (tags if all_tags else [])
        if not (all_branches or all_tags):
            pool = branches + tags
        return list(dict.fromkeys(r for r in pool if not pattern or fnmatch.fnmatchcase(r, pattern)))

    def templates(
        self, key: str | None = None, revision: str = "", all_templates: bool = True
    ) -> list[TemplateInfo]:
        """The workflow templates of a repository at a revision, with their public variables."""
        repository = self.repository(key, revision)
        rev = getattr(repository, "revision", revision or DIRECTORY_REVISION)
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


def _check_directory_revision(identifier: str, revision: str) -> None:
    if revision and revision != DIRECTORY_REVISION:
        raise UnknownRevisionError(
            f"repository {identifier} is a directory: it has no revision {revision!r} "
            f"(only {DIRECTORY_REVISION!r})"
        )


def _is_git(path: Path) -> bool:
    try:
        Repo(str(path)).close()
    except NotGitRepository:
        return False
    return True


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
