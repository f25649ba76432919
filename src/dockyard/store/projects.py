"""Projects: lookups, creation, and the id ↔ name maps other views use."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dockyard.errors import Conflict, NotFound
from dockyard.model.ids import new_id
from dockyard.store import rows
from dockyard.store.tables import ProjectRow


def get(sess: Session, project_id: str | None) -> ProjectRow | None:
    return sess.get(ProjectRow, project_id) if project_id else None


def by_name(sess: Session, name: str) -> ProjectRow | None:
    return sess.scalar(select(ProjectRow).where(ProjectRow.name == name))


def visible(sess: Session, ref: str, project_id: str | None, admin: bool) -> ProjectRow:
    """A project by name or id; another project than `project_id` is 404 unless `admin`."""
    row = sess.scalar(select(ProjectRow).where(or_(ProjectRow.name == ref,
                                                   ProjectRow.id == ref)))
    if row is None or not (admin or row.id == project_id):
        raise NotFound(f"project {ref!r} not found")
    return row


def create(sess: Session, name: str) -> ProjectRow:
    """A new project; 409 when the name is taken (also when a concurrent create won the
    UNIQUE(name) race)."""
    if sess.scalar(select(ProjectRow.id).where(ProjectRow.name == name)):
        raise Conflict(f"a project named {name!r} already exists")
    return rows.insert_unique(sess, ProjectRow(id=new_id(), name=name),
                              Conflict(f"a project named {name!r} already exists"))


def ensure(sess: Session, name: str) -> ProjectRow:
    """The project named `name`, created when missing (a concurrent creator's row makes the
    flush raise IntegrityError: the caller reads again in a new transaction)."""
    row = by_name(sess, name)
    if row is None:
        row = ProjectRow(id=new_id(), name=name)
        sess.add(row)
        sess.flush()
    return row


def listing(sess: Session, only: str | None = None) -> list[ProjectRow]:
    """Every project by name, or only the one with id `only`."""
    query = select(ProjectRow).order_by(ProjectRow.name)
    if only is not None:
        query = query.where(ProjectRow.id == only)
    return list(sess.scalars(query))


def names_by_id(sess: Session) -> dict[str, str]:
    """Project id → name."""
    return dict(sess.execute(select(ProjectRow.id, ProjectRow.name)).tuples().all())


def ids_by_name(sess: Session) -> dict[str, str]:
    """Project name → id."""
    return dict(sess.execute(select(ProjectRow.name, ProjectRow.id)).tuples().all())
