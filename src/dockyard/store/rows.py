"""Two shapes every resource module shares: a keyset page, and an insert under a UNIQUE key."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.errors import Conflict

T = TypeVar("T")


def page(sess: Session, query: Select[tuple[T]], limit: int) -> tuple[list[T], bool]:
    """The first `limit` rows of an ordered, filtered `query`; the bool says whether more
    follow (one row more is read to know)."""
    rows = list(sess.scalars(query.limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def by_name(sess: Session, table: Any, project_id: str, after: str,
            limit: int) -> tuple[list[Any], bool]:
    """A page of the project's rows of `table` named after `after`, by name."""
    return page(sess, select(table).where(table.project_id == project_id, table.name > after)
                .order_by(table.name), limit)


def after_id(sess: Session, table: Any, after: int, limit: int,
             equal: dict[str, object]) -> tuple[list[Any], bool]:
    """A page of `table`'s rows with id > after, oldest first, whose columns named in
    `equal` hold the given values (a None value: that column is not filtered)."""
    query = select(table).where(table.id > after, *(
        getattr(table, column) == value for column, value in equal.items() if value is not None))
    return page(sess, query.order_by(table.id), limit)


def insert_unique(sess: Session, row: T, taken: Conflict) -> T:
    """Insert `row` now (flushed); `taken` when a UNIQUE key refuses it (a concurrent insert
    of the same name won: the caller checked before, in its own transaction)."""
    sess.add(row)
    try:
        sess.flush()
    except IntegrityError as exc:
        raise taken from exc
    return row


