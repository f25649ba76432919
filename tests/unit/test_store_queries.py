"""The store's query functions the API routers call (issue 17): keyset pages, scoping, and a
UNIQUE key lost to a concurrent insert answering 409 instead of a 500."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from dockyard.errors import Conflict, NotFound, RetryableConflict
from dockyard.model.ids import new_id
from dockyard.server.bootstrap import init_store
from dockyard.store import alerts, events, hosts, ledger, projects, rows, volumes
from dockyard.store.db import Database
from dockyard.store.records import as_utc
from dockyard.store.tables import EventRow, ProjectRow
from tests.postgres import fresh_database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[Database, str]]:
    database = Database(f"sqlite:///{tmp_path / 'd.db'}")
    project = init_store(database)
    yield database, project
    database.close()


def _pages(fetch: object, limit: int) -> list[tuple[list[int], bool]]:
    """Every page of an id-keyed listing, following `after` from 0."""
    assert callable(fetch)
    found, after = [], 0
    while True:
        page, more = fetch(after, limit)
        found.append(([r.id for r in page], more))
        if not more:
            return found
        after = page[-1].id


def test_event_pages_follow_ids_and_filter(db: tuple[Database, str]) -> None:
    database, project = db
    with database.session() as sess:
        other = projects.create(sess, "other").id
        for i in range(5):
            sess.add(EventRow(project_id=project if i % 2 == 0 else other,
                              instance_id="a" if i < 3 else "b", kind="k", message=str(i)))
    with database.session() as sess:
        ids = [r.id for r in events.page(sess, 0, 100)[0]]
        assert len(ids) == 5 and ids == sorted(ids)
        assert _pages(lambda after, n: events.page(sess, after, n), 2) == [
            (ids[0:2], True), (ids[2:4], True), (ids[4:5], False)]
        assert _pages(lambda after, n: events.page(sess, after, n, project_id=project), 2) == [
            ([ids[0], ids[2]], True), ([ids[4]], False)]
        assert events.page(sess, 0, 10, project_id=other, instance_id="a") == (
            [r for r in events.page(sess, 0, 10)[0] if r.id == ids[1]], False)


def test_volume_pages_by_name_within_the_project(db: tuple[Database, str]) -> None:
    database, project = db
    with database.session() as sess:
        other = projects.create(sess, "other").id
        for name in ("c", "a", "b"):
            volumes.create(sess, project, name)
        volumes.create(sess, other, "a")
    with database.session() as sess:
        first, more = volumes.page(sess, project, "", 2)
        assert ([v.name for v in first], more) == (["a", "b"], True)
        rest, more = volumes.page(sess, project, "b", 2)
        assert ([v.name for v in rest], more) == (["c"], False)
        with pytest.raises(Conflict, match="already exists"):
            volumes.create(sess, project, "a")


def test_a_lost_unique_race_is_a_conflict(db: tuple[Database, str]) -> None:
    """What a concurrent create that passed the name check sees: the UNIQUE key refuses the
    row, and the caller gets the 409, not the driver's IntegrityError."""
    database, _ = db
    with database.session() as sess:
        projects.create(sess, "twin")
    taken = Conflict("a project named 'twin' already exists")
    with pytest.raises(Conflict) as raised, database.session() as sess:
        rows.insert_unique(sess, ProjectRow(id=new_id(), name="twin"), taken)
    assert raised.value is taken
    with database.session() as sess:
        assert [p.name for p in projects.listing(sess)].count("twin") == 1


def test_a_launch_losing_a_volume_race_retries_and_keeps_its_transaction(
        db: tuple[Database, str]) -> None:
    """A launch naming a volume that a concurrent create added meanwhile: `create_bound`
    answers RetryableConflict (the placement step runs again) inside a savepoint, so the
    launch's transaction stays usable and the other volume is left as it was."""
    database, project = db
    with database.session() as sess:
        volumes.create(sess, project, "v")
        host_id = hosts.add(sess, "h1", {}).id
    with database.session() as sess:
        with pytest.raises(RetryableConflict, match="created concurrently"):
            volumes.create_bound(sess, project, "v", host_id)
        kept = volumes.by_name(sess, project, "v")
        assert kept is not None and kept.host_id is None
        fresh = volumes.create_bound(sess, project, "w", host_id)
        assert [v.name for v in volumes.on_host(sess, host_id)] == [fresh.name]


def test_a_move_releases_its_cores_on_one_host_only(db: tuple[Database, str]) -> None:
    database, _ = db
    with database.session() as sess:
        one, two = hosts.add(sess, "h1", {}).id, hosts.add(sess, "h2", {}).id
        ledger.reserve_cores(sess, one, [0, 1], "i")
        ledger.reserve_cores(sess, two, [3], "i")
        ledger.reserve_cores(sess, one, [2], "j")
    with database.session() as sess:
        ledger.release_cores_on(sess, "i", one)
    with database.session() as sess:
        assert ledger.taken_cores(sess, one) == {2: "j"}
        assert ledger.taken_cores(sess, two) == {3: "i"}
        assert ledger.cores_by_host(sess) == {one: [2], two: [3]}
        assert ledger.cores_by_host(sess, {two}) == {two: [3]}


def test_silent_hosts_and_the_oldest_live_heartbeat(db: tuple[Database, str]) -> None:
    """What the scheduler's view reads of liveness: the hosts silent since a cutoff (never
    heard from included), and the oldest heartbeat after it (when the next may time out)."""
    database, _ = db
    now = datetime.now(UTC)
    with database.session() as sess:
        never = hosts.add(sess, "never", {})
        old, recent, newest = (hosts.add(sess, n, {}) for n in ("old", "recent", "newest"))
        old.last_heartbeat = now - timedelta(seconds=60)
        recent.last_heartbeat = now - timedelta(seconds=5)
        newest.last_heartbeat = now
        ids = {h.name: h.id for h in (never, old, recent, newest)}
    cutoff = now - timedelta(seconds=30)
    with database.session() as sess:
        assert hosts.silent_since(sess, cutoff) == {ids["never"], ids["old"]}
        oldest = hosts.oldest_heartbeat_after(sess, cutoff)
        assert oldest is not None and as_utc(oldest) == now - timedelta(seconds=5)
        assert hosts.oldest_heartbeat_after(sess, now) is None
        assert [h.name for h in hosts.among_by_name(sess, {ids["old"], ids["never"]})] == [
            "never", "old"]


def test_project_visibility(db: tuple[Database, str]) -> None:
    database, project = db
    with database.session() as sess:
        other = projects.create(sess, "other")
        assert projects.visible(sess, "other", project, admin=True).id == other.id
        assert projects.visible(sess, other.id, other.id, admin=False).name == "other"
        with pytest.raises(NotFound):
            projects.visible(sess, "other", project, admin=False)
        assert projects.names_by_id(sess)[other.id] == "other"
        assert projects.ids_by_name(sess)["other"] == other.id


def test_alert_rules_and_webhooks_are_scoped(db: tuple[Database, str]) -> None:
    database, project = db
    with database.session() as sess:
        other = projects.create(sess, "other").id
        for name, owner in (("global", None), ("mine", project), ("theirs", other)):
            alerts.add_rule(sess, name=name, kind="oom", threshold=1.0, for_seconds=0.0,
                            project_id=owner)
            alerts.add_webhook(sess, f"http://127.0.0.1:9/{name}", "json", owner)
        with pytest.raises(Conflict):
            alerts.add_rule(sess, name="mine", kind="oom", threshold=1.0, for_seconds=0.0,
                            project_id=project)
    with database.session() as sess:
        assert [r.name for r in alerts.rules(sess, project)] == ["global", "mine"]
        assert [r.name for r in alerts.rules(sess, None)] == ["global", "mine", "theirs"]
        assert [w.url[-6:] for w in alerts.webhooks(sess, other)] == ["global", "theirs"]
        assert alerts.visible_rule(sess, "theirs", project) is None
        row = alerts.visible_rule(sess, "theirs", other)
        assert row is not None
        alerts.delete_rule(sess, row)
    with database.session() as sess:
        assert alerts.visible_rule(sess, "theirs", None) is None


@pytest.fixture
def pg() -> Iterator[Database]:
    with fresh_database("storeq") as url:
        database = Database(url)
        init_store(database)
        yield database
        database.close()


def _waiting_on_a_lock(database: Database) -> bool:
    with database.engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar())


def test_two_creates_racing_on_postgresql_one_gets_409(pg: Database) -> None:
    """READ COMMITTED: the second create does not see the first's uncommitted row, passes the
    name check, and its INSERT waits on the UNIQUE index; when the first commits it is
    refused, and the caller gets Conflict (not IntegrityError), its transaction rolled back."""
    outcome: list[BaseException | str] = []

    def second() -> None:
        try:
            with pg.session() as sess:
                outcome.append(projects.create(sess, "race").id)
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome.append(exc)

    with pg.session() as first:
        winner = projects.create(first, "race").id
        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 30
        while not _waiting_on_a_lock(pg):
            assert time.monotonic() < deadline, "the second INSERT never waited on the first"
            assert thread.is_alive(), outcome
            time.sleep(0.02)
    thread.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict), outcome
    assert "already exists" in str(outcome[0])
    with pg.session() as sess:
        assert [p.id for p in projects.listing(sess) if p.name == "race"] == [winner]
