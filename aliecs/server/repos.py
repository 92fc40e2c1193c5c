"""The repository RPCs of `o2control.Control`: list/add/remove/refresh repositories, their defaults,
and the workflow template catalogue (GetWorkflowTemplates).

They all go to the core's repository manager (`Core.repos`). Its work is blocking (git objects on
disk, clones and fetches over the network), so every call runs in a worker thread and the event
loop keeps serving transitions and event streams meanwhile. Indexes are positions in ListRepos'
order, as in the original.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from aliecs.api import Core
from aliecs.generated import o2control as pb
from aliecs.server.convert import now_ms
from aliecs.server.errors import invalid
from aliecs.workflow.repos import RepoManager, RepositoryError, TemplateInfo, UnknownRevisionError, VarSpec

T = TypeVar("T")
ALL_REPOS = -1  # RefreshReposRequest.index meaning "every repository"

_TYPES = {member.name.lower(): member for member in pb.VarSpecMessageType}
_WIDGETS = {member.name.lower(): member for member in pb.VarSpecMessageUiWidget}


def var_spec(spec: VarSpec) -> pb.VarSpecMessage:
    """Unknown type or widget names fall back to the protocol's first value (string, editBox)."""
    return pb.VarSpecMessage(
        default_value=spec.defaultValue,
        type=_TYPES.get(spec.type.lower(), pb.VarSpecMessageType.string),
        label=spec.label,
        description=spec.description,
        widget=_WIDGETS.get(spec.widget.lower(), pb.VarSpecMessageUiWidget.editBox),
        panel=spec.panel,
        allowed_values=list(spec.allowedValues),
        index=spec.index,
        visible_if=spec.visibleIf,
        enabled_if=spec.enabledIf,
        rows=max(spec.rows, 0),
    )


def template_info(info: TemplateInfo) -> pb.WorkflowTemplateInfo:
    return pb.WorkflowTemplateInfo(
        repo=info.repository,
        template=info.name,
        revision=info.revision,
        var_spec_map={name: var_spec(spec) for name, spec in info.variables.items()},
        description=info.description,
    )


class RepositoryService:
    """Handlers for the repository RPCs, methods of the generated ``ControlBase``: `ControlService`
    inherits them."""

    def __init__(self, core: Core) -> None:
        self.core = core

    @property
    def manager(self) -> RepoManager:
        return self.core.repos

    async def _off_loop(self, work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)

    async def list_repos(self, request: pb.ListReposRequest) -> pb.ListReposReply:
        def work() -> pb.ListReposReply:
            manager = self.manager
            repos = []
            for info in manager.list_repos():
                revisions: list[str] = []
                if request.get_revisions:
                    branches, tags = manager.revisions(info.identifier)
                    revisions = list(dict.fromkeys(branches + tags))
                repos.append(
                    pb.RepoInfo(
                        name=info.identifier,
                        default=info.identifier == manager.default,
                        default_revision=_effective_revision(manager, info.identifier),
                        revisions=revisions,
                    )
                )
            return pb.ListReposReply(
                repos=repos, global_default_revision=manager.global_default_revision, timestamp=now_ms()
            )

        return await self._off_loop(work)

    async def add_repo(self, request: pb.AddRepoRequest) -> pb.AddRepoReply:
        location = request.name.strip()
        if not location:
            raise invalid("name is empty: give a repository, e.g. github.com/org/repo or /abs/path")
        explicit = request.default_revision.strip()

        def work() -> pb.AddRepoReply:
            info = self.manager.add(location, explicit)
            revision = self.manager.default_revision(info.identifier)
            if explicit:
                note = f"default revision {revision}"
            elif revision == self.manager.global_default_revision:
                note = f"default revision {revision} (the global default)"
            else:
                note = (
                    f"default revision {revision} (the global default "
                    f"{self.manager.global_default_revision!r} does not exist in it)"
                )
            return pb.AddRepoReply(
                new_default_revision=revision, info=f"{info.identifier}: {note}", timestamp=now_ms()
            )

        return await self._off_loop(work)

    async def remove_repo(self, request: pb.RemoveRepoRequest) -> pb.RemoveRepoReply:
        def work() -> pb.RemoveRepoReply:
            self.manager.remove(request.index)
            return pb.RemoveRepoReply(new_default_repo=self.manager.default, timestamp=now_ms())

        return await self._off_loop(work)

    async def refresh_repos(self, request: pb.RefreshReposRequest) -> pb.Empty:
        key = None if request.index == ALL_REPOS else request.index
        await self._off_loop(lambda: self.manager.refresh(key))
        return pb.Empty()

    async def set_default_repo(self, request: pb.SetDefaultRepoRequest) -> pb.Empty:
        await self._off_loop(lambda: self.manager.set_default(request.index))
        return pb.Empty()

    async def set_global_default_revision(self, request: pb.SetGlobalDefaultRevisionRequest) -> pb.Empty:
        if not request.revision.strip():
            raise invalid("revision is empty: give a branch, tag or commit, e.g. master")
        await self._off_loop(lambda: self.manager.set_global_default_revision(request.revision))
        return pb.Empty()

    async def set_repo_default_revision(
        self, request: pb.SetRepoDefaultRevisionRequest
    ) -> pb.SetRepoDefaultRevisionReply:
        revision = request.revision.strip()
        if not revision:
            raise invalid("revision is empty: give a branch, tag or commit of the repository")

        def work() -> pb.SetRepoDefaultRevisionReply:
            """As the original: `info` is empty on success; for a revision the repository does not
            have, the answer is still OK and `info` lists the available revisions, one per line
            (the original's coconut prints them under "Operation failed.")."""
            try:
                self.manager.set_default_revision(request.index, revision)
            except UnknownRevisionError:
                branches, tags = self.manager.revisions(request.index)
                available = "".join(f"{name}\n" for name in [*branches, *tags])
                return pb.SetRepoDefaultRevisionReply(info=available, timestamp=now_ms())
            return pb.SetRepoDefaultRevisionReply(info="", timestamp=now_ms())

        return await self._off_loop(work)

    async def get_workflow_templates(
        self, request: pb.GetWorkflowTemplatesRequest
    ) -> pb.GetWorkflowTemplatesReply:
        found = await self._off_loop(
            lambda: self.manager.catalogue(
                repo_pattern=request.repo_pattern,
                revision_pattern=request.revision_pattern,
                all_branches=request.all_branches,
                all_tags=request.all_tags,
                all_workflows=request.all_workflows,
            )
        )
        return pb.GetWorkflowTemplatesReply(
            workflow_templates=[template_info(info) for info in found], timestamp=now_ms()
        )


def _effective_revision(manager: RepoManager, identifier: str) -> str:
    """What a reference without `@revision` uses; a listing still shows a repository whose
    default revisions all vanished upstream, with the problem in place of the revision."""
    try:
        return manager.default_revision(identifier)
    except RepositoryError as exc:  # a listing must not fail because one repository is broken
        return f"(none: {exc})"
