"""The samples store: insert, history, latest values, compaction (down-sampling, expiry)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from dockyard.model.stats import HostSample, InstanceSample, StatsReport
from dockyard.server.bootstrap import init_store
from dockyard.server.metrics import registry
from dockyard.server.routers.stats import parse_since
from dockyard.store import stats
from dockyard.store.db import Database
from dockyard.store.tables import HostRow, SampleRow

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'd.db'}")
    init_store(database)
    yield database
    database.close()


def report(when: datetime, cpu: float, rss: int, instance: str = "i1") -> StatsReport:
    host = HostSample(time=when, load1=1.0, load5=1.0, load15=1.0, cores=4, free_cores=4,
                      memory_total_bytes=100, memory_available_bytes=50, instances_running=1)
    return StatsReport(host=host, instances=[InstanceSample(
        instance_id=instance, time=when, cpu_seconds=cpu, memory_rss_bytes=rss)])


def test_history_and_latest(db: Database) -> None:
    with db.session() as sess:
        for n in range(5):
            stats.insert(sess, "h1", report(T0 + timedelta(seconds=10 * n), n, 100 * n))
    with db.session() as sess:
        items = stats.history(sess, "i1", T0 + timedelta(seconds=15))
        assert [s.cpu_seconds for s in items] == [2, 3, 4]
        assert items[0].time.tzinfo is not None
        now = T0 + timedelta(minutes=1)
        latest = stats.latest_per_instance(sess, now=now)
        assert latest["i1"].cpu_seconds == 4
        assert stats.latest_host(sess, now=now)["h1"].cores == 4
        assert stats.latest_per_instance(sess, now=T0 + timedelta(hours=1)) == {}


def test_compaction_folds_old_buckets_and_drops_expired(db: Database) -> None:
    with db.session() as sess:
        for n in range(60):  # 10 minutes at 10 s, then 10 more in the next bucket
            stats.insert(sess, "h1", report(T0 + timedelta(seconds=10 * n), float(n), n))
        stats.insert(sess, "h1", report(T0 - timedelta(days=8), 0.0, 0))
    with db.session() as sess:
        stats.compact(sess, T0 + timedelta(hours=24, minutes=10))
    with db.session() as sess:
        rows = list(sess.scalars(select(SampleRow).where(SampleRow.instance_id == "i1")))
        assert len(rows) == 1 and rows[0].resolution == stats.BUCKET
        assert rows[0].data["cpu_seconds"] == 59.0  # counter: last value
        assert rows[0].data["memory_rss_bytes"] == round(sum(range(60)) / 60)  # gauge: mean
        assert sess.scalar(select(SampleRow).where(SampleRow.time < T0)) is None
    with db.session() as sess:  # idempotent: a folded row is not folded again
        stats.compact(sess, T0 + timedelta(hours=25))
        assert len(list(sess.scalars(select(SampleRow).where(
            SampleRow.instance_id == "i1")))) == 1


def test_compact_if_due_runs_once_a_minute(db: Database) -> None:
    with db.session() as sess:
        day, week = timedelta(hours=24), timedelta(days=7)
        assert stats.compact_if_due(sess, T0, day, week)
        assert not stats.compact_if_due(sess, T0 + timedelta(seconds=30), day, week)
        assert stats.compact_if_due(sess, T0 + timedelta(seconds=61), day, week)


def test_metrics_parse(db: Database) -> None:
    with db.session() as sess:
        sess.add(HostRow(id="h1", name="local", version=0, draining=False, reserved_cores=[],
                         labels={}))
    with db.session() as sess:
        stats.insert(sess, "h1", report(datetime.now(UTC), 1.5, 4096))
    families = {f.name: f for f in text_string_to_metric_families(
        generate_latest(registry(db, None)).decode())}
    assert "dockyard_instance_cpu_seconds" in families  # no instance row: no series
    assert families["dockyard_instance_cpu_seconds"].samples == []
    assert [s.labels for s in families["dockyard_host_load1"].samples] == [{"host": "local"}]
    # one project's view: its instance families, no host family at all
    scoped = {f.name for f in text_string_to_metric_families(
        generate_latest(registry(db, "p1")).decode())}
    assert "dockyard_instance_cpu_seconds" in scoped
    assert not [name for name in scoped if name.startswith("dockyard_host_")]


def test_parse_since() -> None:
    assert parse_since("60", T0) == T0 - timedelta(seconds=60)
    assert parse_since(None, T0) == T0 - timedelta(minutes=10)
    assert parse_since("2026-01-01T11:00:00Z", T0) == T0 - timedelta(hours=1)
    assert parse_since("2026-01-01T11:00:00", T0) == T0 - timedelta(hours=1)
