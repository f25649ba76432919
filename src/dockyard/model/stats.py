"""Samples the agents' collectors send and the server keeps (history, /metrics, alerts).

Counters (`*_total`, `cpu_seconds`) are cumulative since the container started; rates are
derived by the reader from two samples. Gauges are the value at `time`. None = not available.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class InstanceSample(BaseModel):
    instance_id: str
    time: datetime
    cpu_seconds: float | None = None
    cpu_throttled_seconds: float | None = None
    cpu_throttled_periods: int | None = None
    memory_rss_bytes: int | None = None
    memory_cache_bytes: int | None = None
    memory_swap_bytes: int | None = None
    memory_limit_bytes: int | None = None
    memory_failcnt: int | None = None
    oom_kills: int | None = None
    blkio_read_bytes: int | None = None
    blkio_write_bytes: int | None = None
    blkio_read_ops: int | None = None
    blkio_write_ops: int | None = None
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None
    net_rx_packets: int | None = None
    net_tx_packets: int | None = None
    pids_current: int | None = None
    pids_limit: int | None = None
    cores: float | None = Field(None, description="CPUs the instance may use (cpuset size or "
                                "quota), for load alerts")


class HostSample(BaseModel):
    time: datetime
    load1: float
    load5: float
    load15: float
    cores: int
    free_cores: int = Field(description="cores not held exclusively")
    memory_total_bytes: int
    memory_available_bytes: int
    instances_running: int
    cpu_seconds: float | None = None


class StatsReport(BaseModel):
    """One collector pass of one host: `POST /v1/agent/stats`."""

    host: HostSample
    instances: list[InstanceSample] = Field(default_factory=list)
