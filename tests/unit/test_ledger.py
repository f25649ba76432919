"""The capacity ledger on a real store, SQLite and PostgreSQL: UNIQUE constraints, the version
CAS, migrations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select, text, update

from dockyard.errors import Conflict
from dockyard.model.ids import new_id
from dockyard.server.bootstrap import init_store
from dockyard.store import ledger, revision, tokens
from dockyard.store.db import Database, normalize_url
from dockyard.store.tables import Base, HostRow, InstanceRow, Meta, NetworkRow
from tests.postgres import fresh_database


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_database("ledger") as url:
        yield url


def _empty_postgres(url: str) -> Database:
    """The module's PostgreSQL database, migrated, with every table emptied."""
    database = Database(url)
    database.migrate()
    with database.session() as sess:
        names = ", ".join(t.name for t in Base.metadata.sorted_tables)
        sess.execute(text(f"TRUNCATE {names} CASCADE"))
    return database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, str]]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'd.db'}")
    else:
        database = _empty_postgres(request.getfixturevalue("pg_url"))
    project = init_store(database)
    with database.session() as sess:
        sess.add(HostRow(id="h1", name="h1", version=0, inventory={"cores": [0, 1, 2, 3]},
                         reserved_cores=[], labels={}, draining=False))
        sess.add(NetworkRow(id="n1", name="n1", project_id=project, subnet="10.0.0.0/24",
                            gateway="10.0.0.1", dns=[], bridge="dybn1"))
    yield database, project
    database.close()


def test_migrations_are_idempotent(db: tuple[Database, str]) -> None:
    database, project = db
    assert init_store(database) == project


def test_ip_is_held_once(db: tuple[Database, str]) -> None:
    database, _ = db
    with database.session() as sess:
        ledger.reserve_ip(sess, "n1", "10.0.0.5", "i1")
    with pytest.raises(Conflict, match="already in use"), database.session() as sess:
        ledger.reserve_ip(sess, "n1", "10.0.0.5", "i2")
    with database.session() as sess:
        assert ledger.used_ips(sess, "n1") == {"10.0.0.5"}


def test_core_is_held_once_and_failed_transaction_rolls_back(db: tuple[Database, str]) -> None:
    database, _ = db
    with database.session() as sess:
        ledger.reserve_cores(sess, "h1", [3], "i1")
    with pytest.raises(Conflict), database.session() as sess:
        ledger.reserve_ip(sess, "n1", "10.0.0.9", "i2")  # rolled back with the failure below
        ledger.reserve_cores(sess, "h1", [2, 3], "i2")
    with database.session() as sess:
        assert ledger.taken_cores(sess, "h1") == {3: "i1"}
        assert ledger.used_ips(sess, "n1") == set()


def test_release_is_idempotent(db: tuple[Database, str]) -> None:
    database, _ = db
    with database.session() as sess:
        ledger.reserve_ip(sess, "n1", "10.0.0.5", "i1")
        ledger.reserve_cores(sess, "h1", [1, 2], "i1")
    for _ in range(2):
        with database.session() as sess:
            ledger.release_instance(sess, "i1")
    with database.session() as sess:
        assert ledger.taken_cores(sess, "h1") == {} and ledger.used_ips(sess, "n1") == set()


def test_placement_cas_rejects_a_stale_plan(db: tuple[Database, str]) -> None:
    database, _ = db
    with database.session() as sess:
        ledger.commit_placement(sess, "h1", 0)
    with pytest.raises(Conflict, match="retry"), database.session() as sess:
        ledger.commit_placement(sess, "h1", 0)


def test_the_cas_gives_the_new_version_to_the_host_row_the_session_holds(
        db: tuple[Database, str]) -> None:
    """commit_placement is a Core statement: the session's own HostRow must not keep the old
    version (a later `version += 1` on it would write a version already taken)."""
    database, _ = db
    with database.session() as sess:
        row = sess.get(HostRow, "h1")
        assert row is not None and row.version == 0
        ledger.commit_placement(sess, "h1", 0)
        assert row.version == 1
        row.version += 1
    with database.session() as sess:
        assert sess.scalars(select(HostRow.version).where(HostRow.id == "h1")).one() == 2


def test_no_cores_takes_no_savepoint_and_cores_are_touched(db: tuple[Database, str]) -> None:
    database, _ = db
    with database.read() as sess:
        start = ledger.capacity_stamp(sess)
    sent: list[str] = []
    event.listen(database.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: sent.append(statement))
    with database.session() as sess:
        ledger.reserve_cores(sess, "h1", [], "i1")
        assert "dockyard.capacity_touched" not in sess.info
    assert not [s for s in sent if "SAVEPOINT" in s.upper()]
    with database.session() as sess:
        ledger.reserve_cores(sess, "h1", [2, 3], "i1")
    with database.read() as sess:
        assert ledger.taken_cores(sess, "h1") == {2: "i1", 3: "i1"}
        assert ledger.capacity_stamp(sess) == start + 1
    engine = ledger.session_engine(sess)
    assert ledger.touched_since(engine, start, start + 1) == {"h1"}


def test_concurrent_writers_each_bump_the_stamp_once(db: tuple[Database, str]) -> None:
    """The stamp's increment (one UPDATE … RETURNING) locks its row: no bump is lost between
    concurrent transactions (a lost CAS writes nothing and bumps nothing)."""
    database, _ = db
    with database.read() as sess:
        start = ledger.capacity_stamp(sess)
    failures: list[BaseException] = []

    def place(n: int) -> None:
        for _ in range(n):
            try:
                with database.session() as sess:
                    seen = sess.scalars(select(HostRow.version).where(HostRow.id == "h1")).one()
                    ledger.commit_placement(sess, "h1", seen)
            except Conflict:
                continue  # lost the CAS to the other thread: nothing written, no stamp
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

    threads = [threading.Thread(target=place, args=(15,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    with database.read() as sess:
        version = sess.scalars(select(HostRow.version).where(HostRow.id == "h1")).one()
        stamp = ledger.capacity_stamp(sess)
    assert version > 0
    assert stamp == start + version  # one bump per committed placement, none lost


def test_memory_reserved_sums_instances(db: tuple[Database, str]) -> None:
    database, project = db
    with database.session() as sess:
        for n, mem in enumerate((64 << 20, None, 128 << 20)):
            sess.add(InstanceRow(id=f"i{n}", name=f"i{n}", project_id=project, host_id="h1",
                                 network_id="n1", image="x", hostname="x", ip=f"10.0.0.{n + 2}",
                                 mac="m", state="running", desired_state="running",
                                 limits={"memory_bytes": mem}))
    with database.session() as sess:
        assert ledger.memory_reserved(sess, "h1") == 192 << 20
        assert ledger.instance_count(sess, "h1") == 3


def test_concurrent_reservations_never_share_an_ip(db: tuple[Database, str]) -> None:
    database, _ = db
    wins: list[str] = []
    losses: list[str] = []

    def grab(instance_id: str) -> None:
        try:
            with database.session() as sess:
                ledger.reserve_ip(sess, "n1", "10.0.0.77", instance_id)
            wins.append(instance_id)
        except Conflict:
            losses.append(instance_id)

    threads = [threading.Thread(target=grab, args=(new_id(),)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7


def test_revision_is_monotonic_and_tokens_are_hashed(db: tuple[Database, str]) -> None:
    database, project = db
    with database.session() as sess:
        first = revision.bump(sess)
        second = revision.bump(sess)
        token = tokens.mint(sess, "admin", project_id=project)
    assert second == first + 1
    with database.session() as sess:
        row = tokens.lookup(sess, token)
        assert row is not None and row.hash != token and token not in row.hash
        assert tokens.lookup(sess, token + "x") is None


def test_postgres_urls_use_psycopg() -> None:
    assert normalize_url("postgresql://u:pw@h:5/d") == "postgresql+psycopg://u:pw@h:5/d"
    assert normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_postgres_deadlock_becomes_a_conflict_to_retry(pg_url: str) -> None:
    """Two writers locking rows in opposite orders: PostgreSQL aborts one, which the store
    reports as Conflict("…; retry") so the caller's retry loop takes it again."""
    database = _empty_postgres(pg_url)
    init_store(database)
    with database.session() as sess:
        sess.add_all([Meta(key="a", value="0"), Meta(key="b", value="0")])
    barrier = threading.Barrier(2, timeout=30)
    outcome: list[str] = []

    def write(first: str, second: str) -> None:
        try:
            with database.session() as sess:
                sess.execute(update(Meta).where(Meta.key == first).values(value="1"))
                barrier.wait()
                sess.execute(update(Meta).where(Meta.key == second).values(value="2"))
            outcome.append("committed")
        except Conflict as exc:
            outcome.append(exc.message)

    threads = [threading.Thread(target=write, args=keys) for keys in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    database.close()
    assert sorted(outcome) == ["a concurrent change in the store interfered; retry",
                               "committed"], outcome
