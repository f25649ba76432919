"""Monitoring end to end: the agent's collector (every 1 s in tests) → samples → history,
`/metrics`, `dockyard stats` and `dockyard top`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.dockyard_env import IMAGE, Dockyard

MB = 1024 * 1024


@pytest.fixture
def mon(dy: Dockyard) -> Iterator[dict[str, Any]]:
    inst = dy.ok("launch", IMAGE, "mon", "--memory", "256M", "--json").json()
    try:
        yield inst
    finally:
        dy.cli("delete", "mon", "--force")


def latest(dy: Dockyard, name: str, since: str = "30") -> dict[str, Any] | None:
    with dy.api() as api:
        items = api.get(f"/v1/instances/{name}/stats", since=since)["items"]
    return items[-1] if items else None


def wait_sample(dy: Dockyard, name: str, check: Callable[[dict[str, Any]], bool],
                timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = latest(dy, name)
        if last is not None and check(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"no matching sample of {name} in {timeout}s; last: {last}")


def real_rss(container_id: str) -> int:
    """RssAnon summed over the container's processes, read on the host."""
    client = docker.from_env()
    try:
        pid = int(client.api.inspect_container(container_id)["State"]["Pid"])
    finally:
        client.close()
    memory_path = next(line.split(":", 2)[2] for line in
                       Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                       if line.split(":")[1] == "memory")
    total = 0
    for proc in Path(f"/sys/fs/cgroup/memory{memory_path}/cgroup.procs").read_text().split():
        for line in Path(f"/proc/{proc}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                total += int(line.split()[1]) * 1024
    return total


def test_page_cache_is_not_rss(dy: Dockyard, mon: dict[str, Any]) -> None:
    before = wait_sample(dy, "mon", lambda s: s["memory_rss_bytes"] is not None)
    assert before["memory_limit_bytes"] == 256 * MB
    assert before["memory_cache_bytes"] < 50 * MB
    dy.ok("exec", "mon", "--", "dd", "if=/dev/zero", "of=/tmp/big", "bs=1M", "count=100")
    after = wait_sample(dy, "mon", lambda s: s["memory_cache_bytes"] >= 80 * MB)
    assert after["memory_rss_bytes"] < 20 * MB, after
    assert abs(after["memory_rss_bytes"] - real_rss(mon["container_id"])) < 8 * MB
    assert after["pids_current"] >= 1 and after["pids_limit"] == 4096
    assert after["cpu_seconds"] >= before["cpu_seconds"]


def until_points(api: Any, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The last minute of mon's samples, once it holds `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        points: list[dict[str, Any]] = api.get("/v1/instances/mon/stats", since="60")["items"]
        if len(points) >= count:
            return points
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} samples of mon within {timeout:.0f}s: {points}")


def test_history_metrics_cli(dy: Dockyard, mon: dict[str, Any]) -> None:
    gateway = mon["ip"].rsplit(".", 1)[0] + ".1"
    dy.cli("exec", "mon", "--", "ping", "-c", "3", "-W", "1", gateway)
    wait_sample(dy, "mon", lambda s: (s["net_tx_packets"] or 0) >= 3)
    with dy.api() as api:
        points = until_points(api, 3)
        assert all(p["instance_id"] == mon["id"] for p in points)
        assert api.get("/v1/stats")["items"][0]["name"] == "mon"
    text = httpx.get(f"{dy.url}/metrics", timeout=10, verify=dy.verify,
                     headers={"Authorization": f"Bearer {dy.token()}"}).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("cpu_seconds", "memory_rss_bytes", "memory_cache_bytes",
                 "memory_limit_bytes", "oom_kills", "pids", "network_receive_bytes",
                 "network_transmit_bytes", "blkio_read_bytes", "blkio_write_bytes"):
        samples = families[f"dockyard_instance_{name}"].samples
        mine = [s for s in samples if s.labels.get("instance") == "mon"]
        assert mine, name
        assert mine[0].labels == {"instance": "mon", "host": "local", "project": "default"}
    assert "dockyard_instance_cpu_seconds_total" in text
    assert families["dockyard_host_load1"].samples
    one = dy.ok("stats", "mon", "--json").json()
    assert one["instance_id"] == mon["id"] and one["memory_rss_bytes"] > 0
    shown = dy.ok("stats", "mon", "--once").out
    assert "mon" in shown and "CPU %" in shown
    assert "mon" in dy.ok("stats", "--once").out


def test_top_lists_the_shell(dy: Dockyard, mon: dict[str, Any]) -> None:
    reply = dy.ok("top", "mon", "--json").json()
    assert "PID" in reply["titles"] and reply["processes"]
    command = reply["titles"].index("CMD")
    assert any("sh" in row[command] for row in reply["processes"])
    assert "PID" in dy.ok("top", "mon").out
