"""Repositories and builds on the server side: add / list / show / remove a repository,
queue a build (by hand or from a push webhook), cancel one, the API views. The build itself
is run by `build_runner.py` on an agent.

    webhook(repo id, headers, raw body) ─▶ size (413) ─▶ signature over the raw bytes (401,
        nothing stored) ─▶ parse ─▶ another branch: acknowledged, ignored ─▶ one transaction:
        delivery keys recorded (a replay: dropped) + the build queued ─▶ runner woken
    upload(repo without url, tar bytes) ─▶ size (413, in the router) ─▶ builds/archive.py
        checks (422: not a tar, a path or link outside it, no Dockerfile) ─▶ one transaction:
        the build queued (ref sha256:<digest>) + its archive stored ─▶ runner woken; the
        archive is deleted when the build ends, whatever the end
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from dockyard.builds import webhooks
from dockyard.builds.archive import check_archive
from dockyard.errors import Conflict, NotFound
from dockyard.model.build import (
    Build,
    BuildState,
    HookReply,
    Repo,
    RepoCreate,
    RepoCreated,
)
from dockyard.model.ids import new_id
from dockyard.server.build_secrets import SecretBox
from dockyard.server.context import ServerContext
from dockyard.store import builds as store
from dockyard.store import projects
from dockyard.store.builds import BuildRow, RepoRow


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def repo_view(project: str, row: RepoRow) -> Repo:
    return Repo(id=row.id, name=row.name, project=project, url=row.url, branch=row.branch,
                dockerfile=row.dockerfile, context=row.context, image=row.image,
                deploy=list(row.deploy), has_credentials=row.credentials_enc is not None,
                timeout=row.timeout, memory_bytes=row.memory_bytes, cpus=row.cpus,
                hook_url=f"/v1/hooks/{row.id}",
                created_at=row.created_at.isoformat())


def build_view(project: str, repo: str, row: BuildRow) -> Build:
    duration = (row.finished_at - row.started_at).total_seconds() \
        if row.finished_at and row.started_at else None
    return Build(id=row.id, repo=repo, repo_id=row.repo_id, project=project, ref=row.ref,
                 branch=row.branch, commit=row.commit, author=row.author, message=row.message,
                 trigger=row.trigger, state=BuildState(row.state), host=row.host,
                 image=row.image, digest=row.digest, step=row.step, error=row.error,
                 operation=row.operation_id, rollout=row.rollout,
                 created_at=row.created_at.isoformat(),
                 started_at=_iso(row.started_at), finished_at=_iso(row.finished_at),
                 duration=duration)


def _image(project: str, spec: RepoCreate) -> str:
    name = spec.image or spec.name
    first, slash, rest = name.partition("/")
    if slash and first == project:
        return name
    return f"{project}/{name}"


def add_repo(ctx: ServerContext, box: SecretBox, project_id: str,
             spec: RepoCreate) -> RepoCreated:
    if spec.timeout is not None and spec.timeout > ctx.settings.build_timeout:
        # a valid number this server's settings do not allow: a conflict with its state, as a
        # quota is (the schema cannot know the limit)
        raise Conflict(f"timeout: at most the server's build limit "
                       f"{ctx.settings.build_timeout:g}s")
    limits = ctx.settings
    if spec.memory is not None and spec.memory > limits.build_memory:
        raise Conflict(f"memory: at most the server's build limit {limits.build_memory} bytes")
    if spec.cpus is not None and spec.cpus > limits.build_cpus:
        raise Conflict(f"cpus: at most the server's build limit {limits.build_cpus:g}")
    secret = secrets.token_hex(24)
    with ctx.db.session() as sess:
        project = projects.names_by_id(sess)[project_id]
        row = store.add_repo(sess, RepoRow(
            id=new_id(), name=spec.name, project_id=project_id, url=spec.url,
            branch=spec.branch, dockerfile=spec.dockerfile, context=spec.context,
            image=_image(project, spec), deploy=spec.deploy, secret_enc=box.seal(secret),
            credentials_enc=box.seal(spec.credentials) if spec.credentials else None,
            timeout=spec.timeout, memory_bytes=spec.memory, cpus=spec.cpus))
        view = repo_view(project, row)
    return RepoCreated(**view.model_dump(), webhook_secret=secret)


def repo_page(ctx: ServerContext, project_id: str, after: str,
              limit: int) -> tuple[list[Repo], bool]:
    with ctx.db.read() as sess:
        project = projects.names_by_id(sess)[project_id]
        rows, more = store.repo_page(sess, project_id, after, limit)
        return [repo_view(project, r) for r in rows], more


def show_repo(ctx: ServerContext, project_id: str, ref: str) -> Repo:
    with ctx.db.read() as sess:
        return repo_view(projects.names_by_id(sess)[project_id],
                         store.repo(sess, project_id, ref))


def remove_repo(ctx: ServerContext, project_id: str, ref: str) -> None:
    with ctx.db.session() as sess:
        store.remove_repo(sess, store.repo(sess, project_id, ref))


def _views(sess: Session, rows: list[BuildRow]) -> list[Build]:
    names = projects.names_by_id(sess)
    repos = store.repo_names(sess, {r.repo_id for r in rows})
    return [build_view(names.get(r.project_id, ""), repos.get(r.repo_id, ""), r) for r in rows]


def show_build(ctx: ServerContext, project_id: str | None, build_id: str) -> Build:
    with ctx.db.read() as sess:
        return _views(sess, [store.build(sess, project_id, build_id)])[0]


def build_page(ctx: ServerContext, project_id: str, repo: str | None, before: int | None,
               limit: int) -> tuple[list[Build], int | None]:
    """A page of builds, newest first; the cursor of the next page (a build's seq)."""
    with ctx.db.read() as sess:
        repo_id = store.repo(sess, project_id, repo).id if repo else None
        rows, more = store.build_page(sess, project_id, repo_id, before, limit)
        return _views(sess, rows), rows[-1].seq if more and rows else None


UNPACKED_PER_UPLOADED = 16  # an archive may unpack to this many times the upload limit


def _git_only(row: RepoRow) -> None:
    if row.url is None:
        raise Conflict(f"repository {row.name} builds uploaded archives (it has no git URL): "
                       f"POST /v1/repos/{row.name}/builds/upload")


def _archives_only(row: RepoRow) -> RepoRow:
    if row.url is not None:
        raise Conflict(f"repository {row.name} builds from {row.url}: an archive is built by "
                       "a repository without a git URL")
    return row


def start(ctx: ServerContext, project_id: str, repo: str, ref: str | None) -> Build:
    """Queue a build of `ref` (the repository's branch by default) by hand."""
    with ctx.db.session() as sess:
        row = store.repo(sess, project_id, repo)
        _git_only(row)
        wanted = ref or row.branch
        branch = wanted if wanted == row.branch else None
        build = store.queue(sess, row, wanted, branch, "manual")
        return _views(sess, [build])[0]


def upload(ctx: ServerContext, project_id: str, repo: str, data: bytes) -> Build:
    """Queue a build of an uploaded tar archive (the router capped its size); the archive is
    checked before anything is stored, and stored with the build in one transaction."""
    with ctx.db.read() as sess:
        dockerfile = _archives_only(store.repo(sess, project_id, repo)).dockerfile
    found = check_archive(data, dockerfile,
                          ctx.settings.build_upload_max_bytes * UNPACKED_PER_UPLOADED)
    with ctx.db.session() as sess:
        row = _archives_only(store.repo(sess, project_id, repo))
        build = store.queue(sess, row, f"sha256:{found.sha256}", None, "upload")
        store.keep_archive(sess, build.id, found.sha256, data)
        return _views(sess, [build])[0]


def cancel(ctx: ServerContext, project_id: str, build_id: str) -> tuple[Build, str | None]:
    """Cancel a build: a queued one at once; a running one is marked and the host running it
    returned (the caller tells that host's agent to stop it). 409 once it finished."""
    with ctx.db.session() as sess:
        row = store.build(sess, project_id, build_id)
        if store.cancel_queued(sess, build_id):
            store.record_event(sess, build_id, "build_cancelled", "cancelled while queued")
        elif not store.request_cancel(sess, build_id):
            raise Conflict(f"build {build_id} is already {row.state}")
        sess.refresh(row)
        return _views(sess, [row])[0], row.host if row.state == "running" else None


def webhook(ctx: ServerContext, box: SecretBox, repo_id: str, headers: Mapping[str, str],
            body: bytes) -> HookReply:
    """A push webhook (see the module docstring); the signature is checked on the raw
    bytes before anything is parsed or stored."""
    with ctx.db.read() as sess:
        repo = store.repo_by_id(sess, repo_id)
        if repo is None:
            raise NotFound(f"repository {repo_id} not found")
        secret = box.open(repo.secret_enc)
        branch = repo.branch
        uploads_only = repo.url is None
    webhooks.verify(headers, body, secret)
    push = webhooks.parse_push(headers, body)
    if uploads_only:
        return HookReply(queued=False, reason="the repository builds uploaded archives: "
                         "pushes are ignored")
    if isinstance(push, webhooks.Ignored):
        return HookReply(queued=False, reason=push.reason)
    if push.branch != branch:
        return HookReply(queued=False, reason=f"{push.ref} is not the repository's branch "
                         f"{branch}: ignored")
    with ctx.db.session() as sess:
        repo = store.repo_by_id(sess, repo_id)
        if repo is None:
            raise NotFound(f"repository {repo_id} not found")
        if not store.first_delivery(sess, repo_id, webhooks.delivery_keys(headers, body)):
            return HookReply(queued=False, reason="replayed delivery: dropped")
        build = store.queue(sess, repo, push.branch, push.branch, "webhook", push.commit,
                            push.author, push.message)
        return HookReply(queued=True, build=build.id)
