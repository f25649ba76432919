"""Queries of repositories and builds (tables in `build_tables.py`). The server's build
services (`server/builds.py`, `server/build_runner.py`) and routers call these; no SQL
elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.errors import Conflict, NotFound, RetryableConflict
from dockyard.model.ids import new_id
from dockyard.store.build_tables import (
    BuildArchiveRow,
    BuildLogRow,
    BuildRow,
    HookDeliveryRow,
    RepoRow,
)
from dockyard.store.rows import by_name, insert_unique, page
from dockyard.store.tables import EventRow, Meta, OperationRow

__all__ = ["BuildLogRow", "BuildRow", "RepoRow", "Session"]

ACTIVE = ("queued", "running")
BUILD_SLOTS = "build_slots"  # the meta row whose lock serialises build starts (all servers)


def now() -> datetime:
    return datetime.now(UTC)


# --- repositories ---------------------------------------------------------------------------

def add_repo(sess: Session, row: RepoRow) -> RepoRow:
    if sess.scalar(select(RepoRow.id).where(RepoRow.project_id == row.project_id,
                                            RepoRow.name == row.name)):
        raise Conflict(f"repository {row.name} already exists")
    return insert_unique(sess, row, Conflict(f"repository {row.name} already exists"))


def repo_page(sess: Session, project_id: str, after: str, limit: int) -> tuple[list[RepoRow],
                                                                               bool]:
    return by_name(sess, RepoRow, project_id, after, limit)


def repo(sess: Session, project_id: str, ref: str) -> RepoRow:
    """The project's repository named (or with id) `ref`; 404 otherwise."""
    row = sess.scalar(select(RepoRow).where(RepoRow.project_id == project_id,
                                            RepoRow.name == ref))
    if row is None:
        row = sess.get(RepoRow, ref)
        if row is not None and row.project_id != project_id:
            row = None
    if row is None:
        raise NotFound(f"repository {ref} not found")
    return row


def repo_by_id(sess: Session, repo_id: str) -> RepoRow | None:
    return sess.get(RepoRow, repo_id)


def repo_names(sess: Session, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = sess.execute(select(RepoRow.id, RepoRow.name).where(RepoRow.id.in_(ids)))
    return {str(repo_id): str(name) for repo_id, name in rows}


def remove_repo(sess: Session, row: RepoRow) -> None:
    """Delete a repository with its builds and logs; 409 while one of its builds runs."""
    if sess.scalar(select(BuildRow.id).where(BuildRow.repo_id == row.id,
                                             BuildRow.state == "running")):
        raise Conflict(f"repository {row.name} has a running build: cancel it first")
    ids = list(sess.scalars(select(BuildRow.id).where(BuildRow.repo_id == row.id)))
    if ids:
        sess.execute(delete(BuildLogRow).where(BuildLogRow.build_id.in_(ids)))
        sess.execute(delete(BuildArchiveRow).where(BuildArchiveRow.build_id.in_(ids)))
        sess.execute(delete(BuildRow).where(BuildRow.id.in_(ids)))
    sess.execute(delete(HookDeliveryRow).where(HookDeliveryRow.repo_id == row.id))
    sess.delete(row)


# --- webhook deliveries ---------------------------------------------------------------------

def first_delivery(sess: Session, repo_id: str, keys: list[str]) -> bool:
    """Record the delivery's keys; False when any was seen before (a replay)."""
    seen = sess.scalar(select(HookDeliveryRow.key).where(HookDeliveryRow.repo_id == repo_id,
                                                         HookDeliveryRow.key.in_(keys)))
    if seen is not None:
        return False
    try:
        with sess.begin_nested():
            for key in keys:
                sess.add(HookDeliveryRow(repo_id=repo_id, key=key))
    except IntegrityError:  # the same delivery, concurrently: that one won
        return False
    return True


# --- builds ---------------------------------------------------------------------------------

def queue(sess: Session, repo: RepoRow, ref: str, branch: str | None, trigger: str,
          commit: str | None = None, author: str | None = None,
          message: str | None = None) -> BuildRow:
    seq = (sess.scalar(select(func.max(BuildRow.seq))) or 0) + 1
    row = BuildRow(id=new_id(), seq=seq, repo_id=repo.id, project_id=repo.project_id, ref=ref,
                   branch=branch, commit=commit, author=author, message=message,
                   trigger=trigger, state="queued", cancel_requested=False)
    return insert_unique(sess, row, RetryableConflict("another build was queued at the same "
                                                      "moment; retry"))


def keep_archive(sess: Session, build_id: str, sha256: str, data: bytes) -> None:
    """The uploaded context of a just-queued build (same transaction): kept until it ends."""
    sess.add(BuildArchiveRow(build_id=build_id, sha256=sha256, size=len(data), data=data))
    sess.flush()


def archive_digest(sess: Session, build_id: str) -> str | None:
    """The sha256 of the build's uploaded archive (None: it has none, or it ended)."""
    return sess.scalar(select(BuildArchiveRow.sha256)
                       .where(BuildArchiveRow.build_id == build_id))


def archive_data(sess: Session, build_id: str) -> bytes | None:
    return sess.scalar(select(BuildArchiveRow.data).where(BuildArchiveRow.build_id == build_id))


def archive_count(sess: Session) -> int:
    """Stored archives (every one belongs to a queued or running build)."""
    return int(sess.scalar(select(func.count()).select_from(BuildArchiveRow)) or 0)


def _drop_archive(sess: Session, build_id: str) -> None:
    sess.execute(delete(BuildArchiveRow).where(BuildArchiveRow.build_id == build_id))


def build(sess: Session, project_id: str | None, build_id: str) -> BuildRow:
    """A build of the project (any project's with None); 404 otherwise."""
    row = sess.get(BuildRow, build_id)
    if row is None or (project_id is not None and row.project_id != project_id):
        raise NotFound(f"build {build_id} not found")
    return row


def build_page(sess: Session, project_id: str, repo_id: str | None, before: int | None,
               limit: int) -> tuple[list[BuildRow], bool]:
    """The project's builds (of one repository), newest first, older than seq `before`."""
    query = select(BuildRow).where(BuildRow.project_id == project_id)
    if repo_id is not None:
        query = query.where(BuildRow.repo_id == repo_id)
    if before is not None:
        query = query.where(BuildRow.seq < before)
    return page(sess, query.order_by(BuildRow.seq.desc()), limit)


def queued(sess: Session) -> list[BuildRow]:
    return list(sess.scalars(select(BuildRow).where(BuildRow.state == "queued")
                             .order_by(BuildRow.seq)))


def running_repos(sess: Session) -> set[str]:
    return set(sess.scalars(select(BuildRow.repo_id).where(BuildRow.state == "running")))


def _move(sess: Session, build_id: str, old: str, **values: Any) -> bool:
    """A conditional state move; a build that ends here loses its uploaded archive."""
    done = sess.execute(update(BuildRow).where(BuildRow.id == build_id, BuildRow.state == old)
                        .values(**values).execution_options(synchronize_session=False))
    moved = getattr(done, "rowcount", 0) == 1
    if moved and values.get("state") in ("succeeded", "failed", "cancelled"):
        _drop_archive(sess, build_id)
    return moved


def claim(sess: Session, row: BuildRow, host: str | None = None) -> bool:
    """queued → running on `host` with its `build` operation (the journal); True if this
    call moved it (of concurrent servers exactly one does)."""
    at = now()
    op_id = new_id()
    if not _move(sess, row.id, "queued", state="running", started_at=at, heartbeat_at=at,
                 operation_id=op_id, host=host):
        return False
    sess.add(OperationRow(id=op_id, kind="build", project_id=row.project_id, instance_id=None,
                          status="running", steps=[{"step": "claimed", "build": row.id,
                                                    "at": at.isoformat()}]))
    return True


def operation_step(sess: Session, op_id: str | None, step: str, **facts: object) -> None:
    op = sess.get(OperationRow, op_id) if op_id else None
    if op is not None:
        op.steps = [*op.steps, {"step": step, **facts, "at": now().isoformat()}]


def end_operation(sess: Session, op_id: str | None, state: str, error: str | None) -> None:
    op = sess.get(OperationRow, op_id) if op_id else None
    if op is not None:
        op.status = "success" if state == "succeeded" else "failure"
        op.error = error[:1024] if error and state != "succeeded" else None
        op.steps = [*op.steps, {"step": state, "at": now().isoformat()}]


def lock_build_slots(sess: Session) -> None:
    """Take the cluster-wide build-start lock: a row lock (FOR UPDATE) on meta `build_slots`,
    held to the end of the transaction. What a pass reads after it (queued builds, running
    builds per host and per repository) stays true until its claims commit, so two servers
    on one PostgreSQL never both fill a host's last build slot. On SQLite writers are
    serialised already (BEGIN IMMEDIATE) and FOR UPDATE is not emitted."""
    slot = select(Meta.key).where(Meta.key == BUILD_SLOTS).with_for_update()
    if sess.scalar(slot) is not None:
        return
    try:  # first use: created here; a concurrent creator's row is locked by it until it ends
        with sess.begin_nested():
            sess.add(Meta(key=BUILD_SLOTS, value=""))
    except IntegrityError:
        sess.scalar(slot)


def builds_per_host(sess: Session) -> dict[str, int]:
    """Running builds per host name (the runner picks the least busy build host)."""
    return {str(host): int(count) for host, count in sess.execute(
        select(BuildRow.host, func.count()).where(BuildRow.state == "running",
                                                  BuildRow.host.is_not(None))
        .group_by(BuildRow.host)).tuples()}


def supersede(sess: Session, build_id: str, by: str) -> bool:
    return _move(sess, build_id, "queued", state="cancelled", finished_at=now(),
                 error=f"superseded by build {by}")


def cancel_queued(sess: Session, build_id: str) -> bool:
    return _move(sess, build_id, "queued", state="cancelled", finished_at=now(),
                 error="cancelled")


def request_cancel(sess: Session, build_id: str) -> bool:
    return _move(sess, build_id, "running", cancel_requested=True)


def note_commit(sess: Session, build_id: str, commit: str, author: str | None,
                message: str | None) -> None:
    row = sess.get(BuildRow, build_id)
    if row is not None:
        row.commit = commit
        row.author = row.author or author
        row.message = row.message or message


def finish(sess: Session, build_id: str, state: str, *, image: str | None = None,
           digest: str | None = None, step: str | None = None,
           error: str | None = None) -> bool:
    """running → a final state with what the build produced; False if it was not running."""
    return _move(sess, build_id, "running", state=state, image=image, digest=digest, step=step,
                 error=error[:2048] if error else None, finished_at=now(), heartbeat_at=now())


def record_event(sess: Session, build_id: str, kind: str, text: str) -> None:
    """An event of the build (`build_started|succeeded|failed|cancelled`) in the event log,
    of the build's project and host, its message naming the build and its repository."""
    row = sess.get(BuildRow, build_id)
    if row is None:
        return
    repo_row = sess.get(RepoRow, row.repo_id)
    name = repo_row.name if repo_row is not None else row.repo_id
    sess.add(EventRow(project_id=row.project_id, instance_id=None, instance_name=None,
                      host_name=row.host, kind=kind,
                      message=f"build {row.id} of {name} ({row.ref}): {text}"[:1024]))


def failure_streaks(sess: Session) -> dict[str, int]:
    """Repository id → its failed builds since its last successful one (cancelled ones do
    not count): what the `build_failed` alert rule measures."""
    last_ok = (select(BuildRow.repo_id, func.max(BuildRow.seq).label("ok"))
               .where(BuildRow.state == "succeeded").group_by(BuildRow.repo_id).subquery())
    counted = sess.execute(
        select(BuildRow.repo_id, func.count())
        .outerjoin(last_ok, last_ok.c.repo_id == BuildRow.repo_id)
        .where(BuildRow.state == "failed",
               or_(last_ok.c.ok.is_(None), BuildRow.seq > last_ok.c.ok))
        .group_by(BuildRow.repo_id))
    return {str(repo_id): int(count) for repo_id, count in counted}


def all_repos(sess: Session) -> list[RepoRow]:
    return list(sess.scalars(select(RepoRow).order_by(RepoRow.name)))


def set_rollout(sess: Session, build_id: str, text: str) -> None:
    sess.execute(update(BuildRow).where(BuildRow.id == build_id).values(rollout=text[:2048]))


def stale_running(sess: Session, cutoff: datetime) -> list[BuildRow]:
    """Running builds whose server has not written for them since `cutoff`."""
    return list(sess.scalars(select(BuildRow).where(BuildRow.state == "running",
                                                    BuildRow.heartbeat_at < cutoff)))


def append_logs(sess: Session, build_id: str, first_no: int, lines: list[str]) -> None:
    """Log lines numbered first_no, first_no+1, …; the build's heartbeat moves with them."""
    for i, text in enumerate(lines):
        sess.add(BuildLogRow(build_id=build_id, line_no=first_no + i, text=text))
    sess.execute(update(BuildRow).where(BuildRow.id == build_id).values(heartbeat_at=now()))


def last_line_no(sess: Session, build_id: str) -> int:
    return sess.scalar(select(func.max(BuildLogRow.line_no))
                       .where(BuildLogRow.build_id == build_id)) or 0


def log_lines(sess: Session, build_id: str, after: int, limit: int) -> list[tuple[int, str]]:
    return [(r.line_no, r.text) for r in sess.scalars(
        select(BuildLogRow).where(BuildLogRow.build_id == build_id, BuildLogRow.line_no > after)
        .order_by(BuildLogRow.line_no).limit(limit))]
