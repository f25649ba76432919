"""The capacity stamp's session listeners (store/ledger.py) are registered on the writer
sessionmaker of a `Database` only: its write sessions keep the stamp; read sessions and any
other session in the process run none of them (they ran on every session when registered on
the `Session` class)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, event
from sqlalchemy.orm import Session

from dockyard.store import ledger
from dockyard.store.db import Database, sqlite_url
from dockyard.store.tables import NetworkRow

LISTENERS = [("before_flush", ledger._note_flush), ("do_orm_execute", ledger._note_bulk),
             ("before_commit", ledger._bump_stamp), ("after_commit", ledger._publish),
             ("after_transaction_end", ledger._forget)]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url(tmp_path))
    database.migrate()
    yield database
    database.close()


def _stamp(db: Database) -> int:
    with db.read() as sess:
        return ledger.capacity_stamp(sess)


def test_a_write_session_bumps_the_stamp_another_session_does_not(db: Database) -> None:
    start = _stamp(db)
    with db.session() as sess:  # a bulk statement on networks names no host: stamp + 1
        sess.execute(delete(NetworkRow).where(NetworkRow.id == "none"))
    assert _stamp(db) == start + 1
    with Session(db.engine) as sess, sess.begin():  # not the server's writer: no listener
        sess.execute(delete(NetworkRow).where(NetworkRow.id == "none"))
    assert _stamp(db) == start + 1


@pytest.mark.parametrize(("name", "listener"), LISTENERS, ids=[n for n, _ in LISTENERS])
def test_no_capacity_listener_on_the_session_class(db: Database, name: str,
                                                   listener: object) -> None:
    assert not event.contains(Session, name, listener)
