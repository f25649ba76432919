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


def test_as_many_reads_at_once_as_threads_may_run_them(db: Database) -> None:
    """anyio's 40 worker threads and the watches' own (`WATCH_THREADS`) each read at once,
    none waiting for a pooled connection (SQLAlchemy's default pool held 15)."""
    from dockyard.server.context import WATCH_THREADS  # the server's, not the store's layer
    readers = 40 + WATCH_THREADS
    inside = threading.Barrier(readers, timeout=10)
    failed: list[BaseException] = []

    def read() -> None:
        try:
            with db.read() as sess:
                sess.scalar(select(Meta.value).limit(1))
                inside.wait()  # every reader holds its connection here at the same time
        except BaseException as exc:  # noqa: BLE001 (reported below)
            failed.append(exc)

    threads = [threading.Thread(target=read) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failed == []
