"""`Database.read()`: a read-only SQLite transaction that does not queue on the write lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from dockyard.store.db import Database, sqlite_url
from dockyard.store.tables import Meta


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(sqlite_url(tmp_path))
    database.migrate()
    return database


def test_a_read_sees_the_last_commit_while_a_writer_holds_the_lock(db: Database) -> None:
    with db.session() as sess:
        sess.add(Meta(key="seen", value="1"))
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with db.session() as sess:  # BEGIN IMMEDIATE: holds the write lock until it commits
            sess.add(Meta(key="pending", value="2"))
            sess.flush()
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        with db.read() as sess:
            keys = set(sess.scalars(select(Meta.key)))
        waited = time.monotonic() - started
    finally:
        release.set()
        thread.join()
    assert "seen" in keys and "pending" not in keys  # the snapshot before the open write
    assert waited < 5  # it did not wait for the writer (who holds on for 10 s)
    with db.read() as sess:
        assert sess.get(Meta, "pending") is not None


def test_a_change_in_a_read_session_raises_and_is_not_written(db: Database) -> None:
    with pytest.raises(RuntimeError, match="read-only"), db.read() as sess:
        sess.add(Meta(key="sneaky", value="1"))
        sess.flush()
    with db.read() as sess:
        assert sess.get(Meta, "sneaky") is None
