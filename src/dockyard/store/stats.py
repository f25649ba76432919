"""The samples table: insert collector reports, read history and latest values, compact.

Retention (bounded store): raw rows (`resolution` = 0) are kept for `raw_retention`
(24 h by default); older ones are folded into one row per series per `BUCKET` (10 min) whose
gauges are the averages and whose counters and limits are the last values; rows older than
`max_age` (7 days) are dropped. A series is an instance (`instance_id`) or a host's own sample
(`instance_id` NULL). Times are UTC; SQLite hands them back naive, so readers re-attach UTC.

Readers other than the server's routers (alerts) use `history`, `latest_per_instance` and
`latest_host`; they return the model types, never rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from dockyard.model.stats import HostSample, InstanceSample, StatsReport
from dockyard.store import meta
from dockyard.store.tables import SampleRow

__all__ = ["BUCKET", "compact", "compact_if_due", "history", "insert", "latest_host",
           "latest_per_instance"]

BUCKET = 600  # seconds one down-sampled row stands for
COMPACT_EVERY = timedelta(minutes=1)
_COMPACTED_AT = "samples_compacted_at"
# cumulative counters and limits: a down-sampled row keeps the last value, not the mean
_LAST = {"cpu_seconds", "cpu_throttled_seconds", "cpu_throttled_periods",
         "memory_limit_bytes", "memory_failcnt", "oom_kills", "blkio_read_bytes",
         "blkio_write_bytes", "blkio_read_ops", "blkio_write_ops", "net_rx_bytes",
         "net_tx_bytes", "net_rx_packets", "net_tx_packets", "pids_limit", "cores",
         "memory_total_bytes"}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def insert(sess: Session, host_id: str, report: StatsReport) -> None:
    """Store one collector pass (raw rows)."""
    rows = [SampleRow(time=_utc(report.host.time), host_id=host_id, instance_id=None,
                      resolution=0, data=report.host.model_dump(mode="json"))]
    rows += [SampleRow(time=_utc(s.time), host_id=host_id, instance_id=s.instance_id,
                       resolution=0, data=s.model_dump(mode="json"))
             for s in report.instances]
    sess.add_all(rows)
    sess.flush()


def _instance(row: SampleRow) -> InstanceSample:
    sample = InstanceSample.model_validate(row.data)
    sample.time = _utc(row.time)
    return sample


def _host(row: SampleRow) -> HostSample:
    sample = HostSample.model_validate(row.data)
    sample.time = _utc(row.time)
    return sample


def history(sess: Session, instance_id: str, since: datetime,
            limit: int = 10000) -> list[InstanceSample]:
    """Samples of one instance from `since` on, oldest first (down-sampled ones included)."""
    rows = sess.scalars(select(SampleRow)
                        .where(SampleRow.instance_id == instance_id,
                               SampleRow.time >= _utc(since))
                        .order_by(SampleRow.time, SampleRow.id).limit(limit))
    return [_instance(r) for r in rows]


def _latest_ids(sess: Session, instance_rows: bool, cutoff: datetime) -> Any:
    key = SampleRow.instance_id if instance_rows else SampleRow.host_id
    where = [SampleRow.time >= cutoff,
             SampleRow.instance_id.is_not(None) if instance_rows
             else SampleRow.instance_id.is_(None)]
    return select(func.max(SampleRow.id)).where(*where).group_by(key)


def latest_per_instance(sess: Session, max_age: timedelta = timedelta(minutes=5),
                        now: datetime | None = None) -> dict[str, InstanceSample]:
    """instance id -> its newest sample, for instances sampled within `max_age` (a stopped
    or deleted instance drops out)."""
    cutoff = (now or datetime.now(UTC)) - max_age
    rows = sess.scalars(select(SampleRow).where(SampleRow.id.in_(
        _latest_ids(sess, True, cutoff))))
    return {str(r.instance_id): _instance(r) for r in rows}


def latest_host(sess: Session, max_age: timedelta = timedelta(minutes=5),
                now: datetime | None = None) -> dict[str, HostSample]:
    """host id -> its newest own sample (within `max_age`)."""
    cutoff = (now or datetime.now(UTC)) - max_age
    rows = sess.scalars(select(SampleRow).where(SampleRow.id.in_(
        _latest_ids(sess, False, cutoff))))
    return {r.host_id: _host(r) for r in rows}


def _fold(rows: list[SampleRow]) -> dict[str, Any]:
    """One row's data from many of the same series: mean of gauges, last of counters."""
    rows = sorted(rows, key=lambda r: (r.time, r.id))
    out: dict[str, Any] = dict(rows[-1].data)
    for key, last in rows[-1].data.items():
        if key in _LAST or isinstance(last, bool) or not isinstance(last, int | float):
            continue
        values = [r.data[key] for r in rows if isinstance(r.data.get(key), int | float)]
        mean = sum(values) / len(values)
        out[key] = round(mean) if isinstance(last, int) else mean
    return out


def _bucket_start(value: datetime) -> datetime:
    stamp = int(_utc(value).timestamp())
    return datetime.fromtimestamp(stamp - stamp % BUCKET, UTC)


def compact(sess: Session, now: datetime, raw_retention: timedelta = timedelta(hours=24),
            max_age: timedelta = timedelta(days=7)) -> int:
    """Down-sample whole buckets older than `raw_retention`, drop rows older than `max_age`.
    Returns the number of rows removed. Idempotent: folded rows are not folded again."""
    removed = sess.execute(delete(SampleRow).where(SampleRow.time < _utc(now - max_age)))
    cutoff = _bucket_start(now - raw_retention)
    old = list(sess.scalars(select(SampleRow).where(SampleRow.time < cutoff,
                                                    SampleRow.resolution < BUCKET)))
    groups: dict[tuple[str, str | None, datetime], list[SampleRow]] = defaultdict(list)
    for row in old:
        groups[(row.host_id, row.instance_id, _bucket_start(row.time))].append(row)
    for (host_id, instance_id, start), rows in groups.items():
        sess.add(SampleRow(time=start, host_id=host_id, instance_id=instance_id,
                           resolution=BUCKET, data=_fold(rows)))
    _delete(sess, (r.id for r in old))
    sess.flush()
    return int(getattr(removed, "rowcount", 0) or 0) + len(old) - len(groups)


def _delete(sess: Session, row_ids: Iterable[int]) -> None:
    batch: list[int] = []
    for row_id in row_ids:
        batch.append(row_id)
        if len(batch) == 500:
            sess.execute(delete(SampleRow).where(SampleRow.id.in_(batch)))
            batch = []
    if batch:
        sess.execute(delete(SampleRow).where(SampleRow.id.in_(batch)))


def compact_if_due(sess: Session, now: datetime, raw_retention: timedelta,
                   max_age: timedelta) -> bool:
    """`compact` at most once per COMPACT_EVERY across all servers (stamp in `meta`)."""
    last = meta.get(sess, _COMPACTED_AT)
    if last is not None and now - datetime.fromisoformat(last) < COMPACT_EVERY:
        return False
    meta.put(sess, _COMPACTED_AT, now.isoformat())
    compact(sess, now, raw_retention, max_age)
    return True
