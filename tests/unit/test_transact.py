"""`Database.transact` on a real PostgreSQL: two writers that lock two rows in opposite orders
deadlock, PostgreSQL aborts one of them (40P01), and `transact` runs the loser again, so both
changes land and no caller sees a 409. This is what an instance delete (instance row, then the
revision row) and an agent's report of another instance's removal (the revision row, then the
host's shared-pool instance rows) did in the two-server suite test."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.errors import RetryableConflict
from dockyard.server.bootstrap import init_store
from dockyard.store import meta
from dockyard.store.db import Database
from dockyard.store.tables import Meta
from tests.postgres import fresh_database


@pytest.fixture(scope="module")
def pg() -> Iterator[Database]:
    with fresh_database("transact") as url:
        database = Database(url)
        init_store(database)
        with database.session() as sess:
            meta.put(sess, "row-a", "0")
            meta.put(sess, "row-b", "0")
        yield database
        database.close()


def _lock_and_add(sess: Session, key: str) -> None:
    row = sess.scalar(select(Meta).where(Meta.key == key).with_for_update())
    assert row is not None
    row.value = str(int(row.value) + 1)
    sess.flush()


def _value(database: Database, key: str) -> int:
    with database.read() as sess:
        return int(sess.scalar(select(Meta.value).where(Meta.key == key)) or 0)


def _opposite_orders(database: Database, run: object) -> tuple[list[str], list[BaseException]]:
    """Two threads: one locks row-a then row-b, the other row-b then row-a, both holding their
    first lock before either asks for its second (a barrier) on their first attempt."""
    barrier = threading.Barrier(2, timeout=30)
    attempts: list[str] = []
    errors: list[BaseException] = []

    def writer(first: str, second: str) -> None:
        def work(sess: Session) -> None:
            attempts.append(first)
            _lock_and_add(sess, first)
            if attempts.count(first) == 1:
                barrier.wait()
            _lock_and_add(sess, second)

        try:
            run(work)  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=order)
               for order in (("row-a", "row-b"), ("row-b", "row-a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return attempts, errors


def test_a_deadlock_loser_is_run_again_and_both_changes_land(pg: Database) -> None:
    before = _value(pg, "row-a"), _value(pg, "row-b")
    attempts, errors = _opposite_orders(pg, pg.transact)
    assert errors == []
    assert len(attempts) == 3, attempts  # one of the two was aborted once and ran again
    assert (_value(pg, "row-a"), _value(pg, "row-b")) == (before[0] + 2, before[1] + 2)


def test_without_transact_the_deadlock_reaches_the_caller(pg: Database) -> None:
    """The same two writers on plain sessions: PostgreSQL aborts one, which the store raises as
    `RetryableConflict` (a 409 "retry" had reached the client this way)."""
    before = _value(pg, "row-a"), _value(pg, "row-b")

    def once(work: object) -> None:
        with pg.session() as sess:
            work(sess)  # type: ignore[operator]

    attempts, errors = _opposite_orders(pg, once)
    assert len(attempts) == 2 and len(errors) == 1, (attempts, errors)
    assert isinstance(errors[0], RetryableConflict)
    assert (_value(pg, "row-a"), _value(pg, "row-b")) == (before[0] + 1, before[1] + 1)


def test_other_errors_are_not_run_again(pg: Database) -> None:
    calls: list[int] = []

    def work(sess: Session) -> None:
        calls.append(1)
        raise ValueError("not a race")

    with pytest.raises(ValueError):
        pg.transact(work)
    assert calls == [1]


def test_a_race_lost_every_time_goes_to_the_caller_after_the_attempts(pg: Database) -> None:
    calls: list[int] = []

    def work(sess: Session) -> None:
        calls.append(1)
        raise RetryableConflict("lost")

    with pytest.raises(RetryableConflict):
        pg.transact(work, attempts=3, backoff=0.0)
    assert len(calls) == 3
