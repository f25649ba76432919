"""The server's cached cluster view (`server.placement.cluster_view`) on a real SQLite store:
it equals a view read afresh after every kind of change, it is patched rather than rebuilt
after this process's own placements, and a cache gone stale behind its back costs a retry (the
version CAS), never a double reservation. Plus `HostIndex.with_hosts` against `build`."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, event, insert, select, text
from sqlalchemy.orm import Session

from dockyard.config import ServerSettings
from dockyard.errors import Conflict, NoValidHost
from dockyard.model.ids import new_id
from dockyard.scheduler import ClusterView, PlacementRequest, place
from dockyard.scheduler.index import HostIndex
from dockyard.server import placement
from dockyard.server.bootstrap import init_store
from dockyard.store import ledger
from dockyard.store.db import Database
from dockyard.store.tables import Base, CoreAllocationRow, HostRow, InstanceRow, NetworkRow
from tests.postgres import fresh_database
from tests.unit.test_scheduler_vectorized import GROUPS, LABELS, assert_same_index, random_host

GiB = 1 << 30


@pytest.mark.parametrize("seed", range(20))
def test_with_hosts_equals_a_rebuilt_index(seed: int) -> None:
    rng = random.Random(500 + seed)
    hosts = [random_host(rng, i) for i in range(rng.randrange(1, 25))]
    index = HostIndex.build(hosts)
    for group in GROUPS:  # memoized masks must be patched, not kept stale
        index.has_group(group)
    for key, values in LABELS.items():
        index.label_is(key, values[0])
    index.on_network("net1")
    changed = {}
    for p in rng.sample(range(len(hosts)), rng.randrange(1, len(hosts) + 1)):
        new = random_host(rng, p)
        changed[p] = new if rng.random() < 0.3 else new.__class__(
            **{**new.__dict__, "id": hosts[p].id, "name": hosts[p].name})
    patched = index.with_hosts(changed)
    after = [changed.get(i, h) for i, h in enumerate(hosts)]
    fresh = HostIndex.build(after)
    assert_same_index(patched, fresh)
    assert patched.position == fresh.position
    assert patched.members == fresh.members
    for key, values in LABELS.items():
        for value in values:
            assert np.array_equal(patched.label_is(key, value), fresh.label_is(key, value))
    for net in ("net1", "net2"):
        assert np.array_equal(patched.on_network(net), fresh.on_network(net))
    assert np.array_equal(index.down, HostIndex.build(hosts).down)  # the old one unchanged


# -- on a store ---------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Database, str, ServerSettings]]:
    db = Database(f"sqlite:///{tmp_path / 'd.db'}")
    project = _four_hosts(db)
    yield db, project, ServerSettings(home=tmp_path)
    db.close()


def _four_hosts(db: Database) -> str:
    """A network and four hosts of 4 cores and 4 GiB, up; returns the project."""
    project = init_store(db)
    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(NetworkRow(id="n1", name="n1", project_id=project, subnet="10.0.0.0/24",
                            gateway="10.0.0.1", dns=[], bridge="dybn1"))
        for i in range(4):
            sess.add(HostRow(id=f"h{i}", name=f"host{i}", version=0, draining=False,
                             inventory={"cores": [0, 1, 2, 3], "memory_bytes": 4 * GiB},
                             reserved_cores=[], labels={}, last_heartbeat=now))
    return project


def _instance(project: str, host_id: str, memory: int, group: str | None = None) -> InstanceRow:
    iid = new_id()
    return InstanceRow(id=iid, name=f"i{iid}", project_id=project, host_id=host_id,
                       network_id="n1", image="busybox", hostname="i", ip="10.0.0.9",
                       mac="02:00:00:00:00:09", state="running", desired_state="running",
                       limits={"memory_bytes": memory, "pids": 0},
                       options={"anti_affinity": group})


def _launch(db: Database, project: str, settings: ServerSettings,
            request: PlacementRequest) -> str:
    """The capacity part of `instances._commit`: cluster view, place, CAS, cores, row."""
    with db.session() as sess:
        view, versions = placement.cluster_view(sess, settings)
        plan = place(request, view)
        ledger.commit_placement(sess, plan.host_id, versions[plan.host_id])
        row = _instance(project, plan.host_id, request.memory_bytes or 0, request.anti_affinity)
        ledger.reserve_cores(sess, plan.host_id, plan.cores, row.id)
        sess.add(row)
        return plan.host_id


def _uncached(db: Database, settings: ServerSettings) -> tuple[ClusterView, dict[str, int]]:
    """What the store says now, read afresh (the cache set aside meanwhile, then restored)."""
    kept = dict(placement._cache)
    placement._cache.clear()
    try:
        with db.read() as sess:
            return placement.cluster_view(sess, settings)
    finally:
        placement._cache.clear()
        placement._cache.update(kept)


def _assert_current(db: Database, settings: ServerSettings) -> ClusterView:
    with db.read() as sess:
        cached, versions = placement.cluster_view(sess, settings)
    fresh, fresh_versions = _uncached(db, settings)
    assert cached.hosts == fresh.hosts
    assert versions == fresh_versions
    assert_same_index(cached.index(), ClusterView(hosts=list(fresh.hosts)).index())
    return cached


def _request(memory: int, cores: int = 0, group: str | None = None) -> PlacementRequest:
    return PlacementRequest(cores=cores, memory_bytes=memory, pids=0, network_id="n1",
                            anti_affinity=group)


def test_own_placements_patch_the_cache_and_match_a_fresh_read(
        store: tuple[Database, str, ServerSettings]) -> None:
    db, project, settings = store
    _assert_current(db, settings)
    for i in range(6):
        before = dict(placement.stats)
        _launch(db, project, settings,
                _request(GiB // 2, cores=i % 2, group="web" if i < 4 else None))
        _assert_current(db, settings)
        # each commit was patched into the cache (the check above read it), never rebuilt
        assert placement.stats["rebuilt"] == before["rebuilt"] + 1  # the fresh read's own
        assert placement.stats["refreshed"] == before["refreshed"] + 1


@pytest.mark.parametrize("change", ["memory", "drain", "labels", "add host", "remove instance",
                                    "heartbeat back", "network", "cores freed"])
def test_a_change_to_hosts_or_capacity_is_seen(
        store: tuple[Database, str, ServerSettings], change: str) -> None:
    db, project, settings = store
    host = _launch(db, project, settings, _request(GiB, cores=2))
    before = _assert_current(db, settings)
    with db.session() as sess:
        row = sess.get(HostRow, host)
        assert row is not None
        if change == "memory":
            row.inventory = {**row.inventory, "memory_bytes": 64 * GiB}
        elif change == "drain":
            row.draining = True
        elif change == "labels":
            row.labels = {"zone": "b"}
        elif change == "add host":
            sess.add(HostRow(id="h9", name="host9", version=0, draining=False,
                             inventory={"cores": [0], "memory_bytes": GiB}, reserved_cores=[],
                             labels={}, last_heartbeat=datetime.now(UTC)))
        elif change == "remove instance":
            inst = sess.scalars(select(InstanceRow).where(InstanceRow.host_id == host)).one()
            ledger.release_instance(sess, inst.id)
            sess.delete(inst)
        elif change == "heartbeat back":
            row.last_heartbeat = datetime.now(UTC) - timedelta(hours=1)
        elif change == "network":
            sess.add(NetworkRow(id="n2", name="n2", project_id=project, subnet="10.0.1.0/24",
                                gateway="10.0.1.1", dns=[], bridge="dybn2"))
        elif change == "cores freed":
            sess.execute(delete(CoreAllocationRow).where(CoreAllocationRow.host_id == host))
    after = _assert_current(db, settings)
    assert after.hosts != before.hosts  # the change is visible, and equal to a fresh read


def test_a_stale_cache_costs_a_retry_never_a_double_reservation(
        store: tuple[Database, str, ServerSettings]) -> None:
    db, project, settings = store
    with db.session() as sess:  # one host left with room: host0, 4 GiB
        for i in (1, 2, 3):
            row = sess.get(HostRow, f"h{i}")
            assert row is not None
            row.draining = True
    _assert_current(db, settings)
    # another writer reserves 3 GiB on host0 behind the cache's back: raw SQL, no session
    # events, so the capacity stamp does not move (the CAS on the version is all that's left)
    behind = _instance(project, "h0", 3 * GiB)
    values = {c.key: getattr(behind, c.key) for c in InstanceRow.__table__.columns
              if getattr(behind, c.key) is not None}
    with db.session() as sess:
        conn = sess.connection()
        conn.execute(text("UPDATE hosts SET version = version + 1 WHERE id = 'h0'"))
        conn.execute(insert(InstanceRow).values(**values))
    with db.read() as sess:  # the stale cache still offers 4 GiB on host0...
        view, _ = placement.cluster_view(sess, settings)
        assert view.hosts[0].memory_reserved_bytes == 0
    with pytest.raises(Conflict, match="retry"):  # ...but the commit's CAS refuses the plan
        _launch(db, project, settings, _request(2 * GiB))
    with pytest.raises(NoValidHost):  # the retry reads the store again: no room
        _launch(db, project, settings, _request(2 * GiB))
    with db.read() as sess:
        reserved = sum(int(r.limits["memory_bytes"]) for r in sess.scalars(
            select(InstanceRow).where(InstanceRow.host_id == "h0")))
    assert reserved == 3 * GiB
    _launch(db, project, settings, _request(GiB))  # what fits still goes


def test_writes_from_another_engine_force_a_rebuild(
        store: tuple[Database, str, ServerSettings], tmp_path: Path) -> None:
    """Another server on the same database: its stamps are not in this process's journal."""
    db, project, settings = store
    _assert_current(db, settings)
    other = Database(db.url)
    try:
        _launch(other, project, settings, _request(3 * GiB))
    finally:
        other.close()
    rebuilt = placement.stats["rebuilt"]
    with db.read() as sess:
        view, _ = placement.cluster_view(sess, settings)
    assert placement.stats["rebuilt"] == rebuilt + 1
    assert sum(h.memory_reserved_bytes for h in view.hosts) == 3 * GiB


def test_a_host_whose_heartbeat_times_out_is_down_in_the_cached_view(
        store: tuple[Database, str, ServerSettings]) -> None:
    """No write at all: the host just stops heartbeating; the cache must not keep it up."""
    db, _, settings = store
    settings.heartbeat_timeout = 2.0
    with db.session() as sess:
        for row in sess.scalars(select(HostRow)):
            row.last_heartbeat = datetime.now(UTC) - timedelta(seconds=1.5)
    with db.read() as sess:
        view, _ = placement.cluster_view(sess, settings)
    assert all(h.up for h in view.hosts)
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while True:  # until the store itself says host0 is down
        with db.read() as sess:
            h0 = sess.get(HostRow, "h0")
            assert h0 is not None
            if not placement.host_is_up(h0, settings.heartbeat_timeout):
                break
        assert datetime.now(UTC) < deadline
        time.sleep(0.05)  # poll interval
    with db.read() as sess:
        view, _ = placement.cluster_view(sess, settings)
    assert not view.hosts[0].up
    with pytest.raises(NoValidHost, match="host is down"):
        place(_request(GiB), view)


def test_a_savepoint_neither_locks_nor_bumps_the_stamp_only_the_outer_commit_does(
        store: tuple[Database, str, ServerSettings]) -> None:
    """SQLAlchemy sends before_commit for a savepoint's release too (reserve_ip, reserve_cores
    use begin_nested): the stamp row is taken at the outermost commit only, once. Taken at
    the savepoint, its lock was held from mid-transaction on and deadlocked two servers'
    transactions on PostgreSQL."""
    db, project, _ = store
    with db.read() as sess:
        before = ledger.capacity_stamp(sess)
    with db.session() as sess:
        row = _instance(project, "h0", GiB)
        sess.add(row)
        ledger.reserve_cores(sess, "h0", [1], row.id)  # a savepoint, released
        assert "dockyard.capacity_pending" not in sess.info  # the stamp not taken yet
        ledger.reserve_cores(sess, "h0", [2], row.id)  # a second one
        assert "dockyard.capacity_pending" not in sess.info
    with db.read() as sess:
        assert ledger.capacity_stamp(sess) == before + 1  # once, at the outer commit
    assert ledger.touched_since(ledger.session_engine(sess), before, before + 1) == {"h0"}


@pytest.mark.parametrize("merge_after", [1, 256])
def test_versions_handed_out_never_change_and_stay_equal_to_a_fresh_read(
        store: tuple[Database, str, ServerSettings], monkeypatch: pytest.MonkeyPatch,
        merge_after: int) -> None:
    """The versions of a view are patched copy-on-write (`_Versions`): a placement in flight
    keeps the ones it read while later refreshes patch, and fold, newer ones."""
    monkeypatch.setattr(placement._Versions, "MERGE_AFTER", merge_after)
    db, project, settings = store
    with db.read() as sess:
        _, first = placement.cluster_view(sess, settings)
    held = dict(first)
    for _ in range(5):
        _launch(db, project, settings, _request(GiB // 4))
        _assert_current(db, settings)  # compares the cached versions with a fresh read
    assert dict(first) == held
    with db.read() as sess:
        _, now = placement.cluster_view(sess, settings)
    assert sum(now.values()) == sum(held.values()) + 5 and set(now) == set(held)


def test_the_journal_is_trimmed_now_and_then_and_keeps_the_newest(
        store: tuple[Database, str, ServerSettings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger, "_JOURNAL_SIZE", 3)
    db, project, settings = store
    engine = db.engine
    with db.read() as sess:
        start = ledger.capacity_stamp(sess)
    hosts = [_launch(db, project, settings, _request(GiB // 8)) for _ in range(8)]
    journal = ledger._journals[engine]
    assert len(journal) <= 2 * 3  # bounded
    assert ledger.touched_since(engine, start + 5, start + 8) == set(hosts[5:])
    assert ledger.touched_since(engine, start, start + 8) is None  # trimmed: rebuild


def test_the_liveness_read_searches_the_heartbeat_index_not_every_host(
        store: tuple[Database, str, ServerSettings]) -> None:
    """`_Liveness.read` runs once a second on the placement path: its two queries must not
    scan the hosts table (5 ms at 10,000 hosts)."""
    db, _, settings = store
    sent: list[tuple[str, object]] = []

    def record(_conn: object, _cursor: object, statement: str, parameters: object,
               *_: object) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    with db.read() as sess:
        placement._Liveness.read(sess, settings.heartbeat_timeout)
    event.remove(db.engine, "before_cursor_execute", record)
    queries = [(s, p) for s, p in sent if "last_heartbeat" in s]
    assert len(queries) == 2
    with db.engine.connect() as conn:
        for statement, parameters in queries:
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {statement}", parameters))  # type: ignore[arg-type]
            assert "ix_hosts_last_heartbeat" in plan and "SCAN hosts" not in plan, plan


# -- several servers on one PostgreSQL ----------------------------------------------------------

@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_database("placement") as url:
        yield url


def test_two_servers_on_postgresql_never_overbook_and_their_caches_match_the_store(
        pg_url: str) -> None:
    """Two `Database`s (two servers' engines) place concurrently on four 4 GiB hosts until
    no host has room: the stamp bump, the Core CAS and the touched-host re-reads keep every
    host within its memory, and each engine's cached view equals a fresh read afterwards."""
    first = Database(pg_url)
    first.migrate()
    with first.session() as sess:
        names = ", ".join(t.name for t in Base.metadata.sorted_tables)
        sess.execute(text(f"TRUNCATE {names} CASCADE"))
    project = _four_hosts(first)
    second = Database(pg_url)
    settings = ServerSettings(home=Path("/nonexistent"))
    placed: list[str] = []
    failures: list[BaseException] = []

    def server(db: Database) -> None:
        while True:
            try:
                placed.append(db.transact(lambda sess: _place_in(sess, project, settings),
                                          attempts=40))
            except NoValidHost:
                return
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
                return

    try:
        threads = [threading.Thread(target=server, args=(db,))
                   for db in (first, second, first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures
        assert len(placed) == 4 * 4 * 2  # every host filled to its 4 GiB with 512 MiB each
        with first.read() as sess:
            rows = sess.execute(select(InstanceRow.host_id, InstanceRow.limits)).all()
        for host in {h for h, _ in rows}:
            assert sum(int(lim["memory_bytes"]) for h, lim in rows if h == host) <= 4 * GiB
        for db in (first, second):
            _assert_current(db, settings)
    finally:
        first.close()
        second.close()


def _place_in(sess: Session, project: str, settings: ServerSettings) -> str:
    view, versions = placement.cluster_view(sess, settings)
    plan = place(_request(GiB // 2), view)
    ledger.commit_placement(sess, plan.host_id, versions[plan.host_id])
    sess.add(_instance(project, plan.host_id, GiB // 2))
    return plan.host_id
