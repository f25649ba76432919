"""Prometheus exposition of the latest samples (`/metrics`, behind a user token).

A custom collector reads the store on every scrape — nothing is kept in process, so any
server of a cluster answers the same. Instance series carry the labels instance (name), host
and project; host series the label host. `dockyard_host_instances_*` are the sums of the
instance series of that host. Instances not sampled for 5 minutes (stopped, deleted,
host down) drop out.

Scope: an admin's scrape sees every series. A scrape limited to one project (a member's
token, or an admin's `?project=`) sees only that project's instance series and no host
series at all: the host sums add up other projects' instances, and the machines' load,
cores and memory are the operator's inventory, not a tenant's.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dockyard.model.stats import HostSample, InstanceSample
from dockyard.store import hosts as host_rows
from dockyard.store import instances as instance_rows
from dockyard.store import projects as project_rows
from dockyard.store import stacks as stack_rows
from dockyard.store import stats
from dockyard.store.db import Database

# (metric name without _total, sample field, counter?, help)
INSTANCE_METRICS: list[tuple[str, str, bool, str]] = [
    ("cpu_seconds", "cpu_seconds", True, "CPU time used"),
    ("cpu_throttled_seconds", "cpu_throttled_seconds", True, "time throttled by the quota"),
    ("memory_rss_bytes", "memory_rss_bytes", False, "anonymous memory (rss)"),
    ("memory_cache_bytes", "memory_cache_bytes", False, "page cache"),
    ("memory_swap_bytes", "memory_swap_bytes", False, "swap used"),
    ("memory_limit_bytes", "memory_limit_bytes", False, "memory limit"),
    ("memory_failures", "memory_failcnt", True, "times the memory limit was hit"),
    ("oom_kills", "oom_kills", True, "processes killed by the OOM killer"),
    ("pids", "pids_current", False, "processes and threads"),
    ("pids_limit", "pids_limit", False, "process limit"),
    ("network_receive_bytes", "net_rx_bytes", True, "bytes received"),
    ("network_transmit_bytes", "net_tx_bytes", True, "bytes sent"),
    ("network_receive_packets", "net_rx_packets", True, "packets received"),
    ("network_transmit_packets", "net_tx_packets", True, "packets sent"),
    ("blkio_read_bytes", "blkio_read_bytes", True, "bytes read from block devices"),
    ("blkio_write_bytes", "blkio_write_bytes", True, "bytes written to block devices"),
    ("blkio_read_ops", "blkio_read_ops", True, "block read operations"),
    ("blkio_write_ops", "blkio_write_ops", True, "block write operations"),
]
HOST_METRICS: list[tuple[str, str, bool, str]] = [
    ("load1", "load1", False, "load average, 1 minute"),
    ("load5", "load5", False, "load average, 5 minutes"),
    ("load15", "load15", False, "load average, 15 minutes"),
    ("cores", "cores", False, "cores of the machine"),
    ("free_cores", "free_cores", False, "cores not held exclusively by instances"),
    ("memory_total_bytes", "memory_total_bytes", False, "physical memory"),
    ("memory_available_bytes", "memory_available_bytes", False, "MemAvailable"),
    ("instances_running", "instances_running", False, "running instances"),
    ("cpu_seconds", "cpu_seconds", True, "busy CPU time of the whole machine"),
]
INSTANCE_LABELS = ["instance", "host", "project"]


def _family(name: str, counter: bool, doc: str,
            labels: list[str]) -> CounterMetricFamily | GaugeMetricFamily:
    if counter:
        return CounterMetricFamily(name, doc, labels=labels)
    return GaugeMetricFamily(name, doc, labels=labels)


class SamplesCollector(Collector):
    """All series, or (`project_id` given) only that project's instance series."""

    def __init__(self, db: Database, project_id: str | None) -> None:
        self.db = db
        self.project_id = project_id

    def _read(self) -> tuple[list[tuple[list[str], str, InstanceSample]],
                             dict[str, HostSample]]:
        with self.db.session() as sess:
            latest = stats.latest_per_instance(sess)
            hosts = host_rows.names_by_id(sess)
            projects = project_rows.names_by_id(sess)
            rows = instance_rows.with_ids(sess, list(latest), self.project_id)
            found = [([r.name, hosts.get(r.host_id or "", ""),
                       projects.get(r.project_id, r.project_id)], r.host_id or "", latest[r.id])
                     for r in rows]
            if self.project_id is not None:
                return found, {}
            host_samples = {hosts.get(k, k): v for k, v in stats.latest_host(sess).items()}
            return found, host_samples

    def collect(self) -> Iterator[Metric]:
        instances, hosts = self._read()
        yield from self._instance_families(instances)
        yield self._healthy()
        if self.project_id is not None:
            return  # no host series in a project's view (see the module docstring)
        for name, field, counter, doc in HOST_METRICS:
            family = _family(f"dockyard_host_{name}", counter, doc, ["host"])
            for host, host_sample in hosts.items():
                value = getattr(host_sample, field)
                if value is not None:
                    family.add_metric([host], float(value))
            yield family

    def _healthy(self) -> Metric:
        """1 for an instance whose healthcheck passes, 0 otherwise (starting, unhealthy)."""
        family = GaugeMetricFamily("dockyard_instance_healthy", "1: the instance's "
                                   "healthcheck passes (instances with a healthcheck only)",
                                   labels=INSTANCE_LABELS)
        with self.db.read() as sess:
            for name, host, project, health in stack_rows.healthchecked(sess, self.project_id):
                family.add_metric([name, host, project], float(health == "healthy"))
        return family

    def _instance_families(self, instances: list[tuple[list[str], str, InstanceSample]]
                           ) -> Iterator[Metric]:
        """Each instance family, followed (in the full view) by its per-host sum."""
        for name, field, counter, doc in INSTANCE_METRICS:
            family = _family(f"dockyard_instance_{name}", counter, doc, INSTANCE_LABELS)
            sums: dict[str, float] = {}
            for labels, _, sample in instances:
                value = getattr(sample, field)
                if value is not None:
                    family.add_metric(labels, float(value))
                    sums[labels[1]] = sums.get(labels[1], 0.0) + float(value)
            yield family
            if self.project_id is not None:
                continue
            total = _family(f"dockyard_host_instances_{name}", counter,
                            f"{doc}, summed over the host's instances", ["host"])
            for host, value in sums.items():
                total.add_metric([host], value)
            yield total


def registry(db: Database, project_id: str | None) -> CollectorRegistry:
    """A registry for one scrape: every series (`project_id=None`, admins) or one project's."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SamplesCollector(db, project_id))
    return reg
