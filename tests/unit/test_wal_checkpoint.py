"""SQLite's WAL is copied back into the database file by the `Database`'s own checkpointer
thread (store/db.py `_Checkpointer`), not by the commit that crosses SQLite's threshold (that
commit paid ~6 ms: the placement path's p99); the thread ends with `close` or with the
engine."""

from __future__ import annotations

import gc
from pathlib import Path

from sqlalchemy import text

from dockyard.store import db as store_db
from dockyard.store.db import Database, sqlite_url
from dockyard.store.tables import Meta
from tests.polling import until


def _fill(database: Database, rows: int) -> None:
    with database.session() as sess:
        for i in range(rows):
            sess.add(Meta(key=f"k{i}", value="x" * 200))


def test_the_checkpointer_copies_the_wal_and_no_commit_does(tmp_path: Path) -> None:
    database = Database(sqlite_url(tmp_path))
    database.migrate()
    try:
        with database.read() as sess:
            limit = sess.execute(text("PRAGMA wal_autocheckpoint")).scalar()
        assert limit == store_db.WAL_AUTOCHECKPOINT  # far past what one burst writes
        main = tmp_path / "dockyard.db"
        before = main.stat().st_size
        _fill(database, 2_000)  # ~500 KB, all in the WAL at commit
        until(lambda: main.stat().st_size > before + 300_000,
              "the WAL was never checkpointed into the database file", timeout=20, every=0.1)
        with database.read() as sess:
            assert sess.execute(text("SELECT count(*) FROM meta WHERE key LIKE 'k%'")
                                ).scalar() == 2_000
    finally:
        database.close()
    assert database._checkpointer is not None and not database._checkpointer.is_alive()


def test_a_database_dropped_without_close_ends_its_checkpointer(tmp_path: Path) -> None:
    database = Database(sqlite_url(tmp_path))
    thread = database._checkpointer
    assert thread is not None and thread.is_alive()
    del database
    gc.collect()
    until(lambda: not thread.is_alive(), "the checkpointer outlived its engine", timeout=20,
          every=0.1)


def test_no_checkpointer_for_an_in_memory_database() -> None:
    database = Database("sqlite://")
    try:
        assert database._checkpointer is None
    finally:
        database.close()
