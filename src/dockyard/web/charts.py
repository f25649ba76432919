"""/instances/{name}/stats: an instance's stored samples as chart series (uPlot's columns).

    store/stats.history (the API's /v1/instances/{ref}/stats, same scoping)
      ─▶ points: rates from consecutive counters (a drop is a restart or a move to another
         host: no point) — CPU in cores from cpu_seconds, network rx/tx and disk
         read/write in bytes a second — and memory rss, cache and limit as sampled
      ─▶ at most POINTS buckets over the window (each the mean of its points), so a week of
         10-second samples is still a small answer
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from dockyard.errors import InvalidRequest
from dockyard.model.stats import InstanceSample
from dockyard.store import records, stats
from dockyard.web.base import PageRoute, Visit, visit

router = APIRouter(route_class=PageRoute, include_in_schema=False)

RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
POINTS = 300  # buckets of a chart at most
SAMPLES = 100_000  # samples read at most (the API's largest page)
# series from counters (a rate a second between two samples) and from gauges (as sampled)
COUNTERS = {"cpu": "cpu_seconds", "rx": "net_rx_bytes", "tx": "net_tx_bytes",
            "read": "blkio_read_bytes", "write": "blkio_write_bytes"}
GAUGES = {"rss": "memory_rss_bytes", "cache": "memory_cache_bytes",
          "limit": "memory_limit_bytes"}
SERIES = (*COUNTERS, *GAUGES)


def _points(samples: list[InstanceSample]) -> list[tuple[float, dict[str, float]]]:
    out = []
    prev: InstanceSample | None = None
    for s in samples:
        values: dict[str, float] = {}
        dt = (s.time - prev.time).total_seconds() if prev is not None else 0.0
        for key, field in COUNTERS.items():
            now, before = getattr(s, field), getattr(prev, field, None)
            if dt > 0 and now is not None and before is not None and now >= before:
                values[key] = (now - before) / dt
        for key, field in GAUGES.items():
            if getattr(s, field) is not None:
                values[key] = float(getattr(s, field))
        out.append((s.time.timestamp(), values))
        prev = s
    return out


def series(samples: list[InstanceSample], start: datetime, end: datetime,
           points: int = POINTS) -> dict[str, list[Any]]:
    """Columns `time` (epoch seconds, each bucket's middle) and one per SERIES (None where a
    bucket has no value), buckets without any sample left out. The buckets span the window
    from its first sample on, so an instance younger than the window gets its full detail."""
    if samples and samples[0].time > start:
        start = samples[0].time
    t0, width = start.timestamp(), max((end - start).total_seconds() / points, 1e-9)
    sums: dict[int, dict[str, list[float]]] = {}
    for when, values in _points(samples):
        slot = min(points - 1, max(0, int((when - t0) // width)))
        bucket = sums.setdefault(slot, {})
        for key, value in values.items():
            bucket.setdefault(key, []).append(value)
    out: dict[str, list[Any]] = {"time": [], **{k: [] for k in SERIES}}
    for slot in sorted(sums):
        out["time"].append(round(t0 + (slot + 0.5) * width, 3))
        for key in SERIES:
            got = sums[slot].get(key)
            out[key].append(sum(got) / len(got) if got else None)
    return out


@router.get("/instances/{name}/stats")
def instance_stats(request: Request, name: str, seen: Visit = Depends(visit)) -> JSONResponse:
    window = request.query_params.get("range", "1h")
    if window not in RANGES:
        raise InvalidRequest(f"range={window!r}: one of {', '.join(RANGES)}")
    end = datetime.now(UTC)
    start = end - RANGES[window]
    with seen.ctx.db.read() as sess:
        row = records.instance_by_ref(sess, seen.caller.project, name)
        samples = stats.history(sess, row.id, start, SAMPLES)
    return JSONResponse(series(samples, start, end))
