"""Live migration (CRIU) on the package's dev-cluster, started with `--criu` (criu_cluster.py):
the move of an instance with lxcfs (the default), the preflight's refusals, the fallback, a
failed restore, and the server killed at each fault point of the move."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard import faults
from dockyard.devcluster import state
from tests.e2e import hostctl
from tests.e2e.conftest import DevCluster
from tests.e2e.criu_cluster import (
    COUNTER,
    WRAPPER,
    assert_counting_on,
    background,
    counts,
    sh,
)

NET = "live"
SUBNET = "10.241.40.0/24"


@pytest.fixture(scope="module")
def live_cluster(criu: DevCluster) -> DevCluster:
    criu.ok("network", "create", NET, "--subnet", SUBNET)
    return criu


def _launch(dc: DevCluster, name: str, host: str, *extra: str) -> dict[str, object]:
    """A busybox instance with lxcfs (the default) unless `extra` says --no-lxcfs."""
    dc.ok("launch", "dockyard/busybox", name, "--host", host, "--network", NET, *extra)
    shown: dict[str, object] = json.loads(dc.ok("show", name, "--json"))
    return shown


def _sh(dc: DevCluster, name: str, script: str) -> str:
    return sh(dc, name, script)


def _background(dc: DevCluster, name: str, script: str) -> None:
    background(dc, name, script)


def test_live_move_keeps_counting(live_cluster: DevCluster) -> None:
    """lxcfs on: the processes go on, and after the move their /proc views are the
    instance's own limits, from the target host's lxcfs."""
    dc = live_cluster
    before = _launch(dc, "counter", "host1", "--memory", "96M")
    _background(dc, "counter", COUNTER)
    assert_counting_on(dc, "counter", 5)
    check = dc.cli("migrate", "counter", "--live", "--check", "--to", "host2")
    print(check.stdout, check.stderr)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "possible" in check.stdout
    moved = dc.cli("migrate", "counter", "--live", "--to", "host2", "--json")
    print(moved.stdout, moved.stderr)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    result = json.loads(moved.stdout)
    assert result["mode"] == "live" and result["target"] == "host2"
    after = json.loads(dc.ok("show", "counter", "--json"))
    assert after["host"] == "host2" and after["state"] == "running"
    assert (after["ip"], after["mac"]) == (before["ip"], before["mac"])
    assert after["generation"] == int(str(before["generation"])) + 1
    # the restored processes see eth0 with the same address
    eth0 = _sh(dc, "counter", "cat /sys/class/net/eth0/address; ip -4 -o addr show eth0")
    assert str(before["mac"]).lower() in eth0.lower() and f"{before['ip']}/" in eth0
    moved_at = len(counts(dc, "counter"))
    assert_counting_on(dc, "counter", moved_at + 5)  # the same loop, on without a restart
    print(f"live downtime {result['downtime']:.3f} s, timings {result}")
    # lxcfs: the instance's own memory limit, from host2's lxcfs (not the host's 24 GiB)
    views = _sh(dc, "counter", "head -1 /proc/meminfo; grep -c fuse.lxcfs /proc/self/mountinfo")
    assert views.split()[:2] == ["MemTotal:", str(96 * 1024)], views
    assert int(views.split()[-1]) == 8, views  # the eight binds, nothing else of lxcfs
    # reachable at its address from another host
    _launch(dc, "livepinger", "host3", "--no-lxcfs")
    assert dc.reaches("livepinger", str(after["ip"]))


def test_preflight_refuses_an_established_tcp_connection(live_cluster: DevCluster) -> None:
    dc = live_cluster
    server = _launch(dc, "tcpserver", "host2")
    _launch(dc, "tcpclient", "host1")
    _background(dc, "tcpserver", "while :; do sleep 100000 | nc -l -p 7000; done")
    _background(dc, "tcpclient", f"while :; do sleep 100000 | nc {server['ip']} 7000; "
                "sleep 1; done")
    deadline = time.monotonic() + 20
    while "ESTABLISHED" not in _sh(dc, "tcpclient", "netstat -tn 2>/dev/null || true"):
        assert time.monotonic() < deadline, "no TCP connection came up"
        time.sleep(0.5)
    check = dc.cli("migrate", "tcpclient", "--live", "--check", "--to", "host3")
    print(check.stdout, check.stderr)
    assert check.returncode == 1
    assert "tcp_established" in check.stdout and f"{server['ip']}:7000" in check.stdout
    refused = dc.cli("migrate", "tcpclient", "--live", "--to", "host3")
    assert refused.returncode != 0 and "tcp_established" in refused.stdout + refused.stderr
    shown = json.loads(dc.ok("show", "tcpclient", "--json"))
    assert shown["host"] == "host1" and shown["state"] == "running"


def test_no_checkpoint_support_then_fallback_moves_it_cold(live_cluster: DevCluster) -> None:
    dc = live_cluster
    before = _launch(dc, "plain", "host1")
    _restart_dockerd(dc.home, "host3", criu_bin="")  # no --experimental, no criu on PATH
    try:
        check = dc.cli("migrate", "plain", "--live", "--check", "--to", "host3")
        print(check.stdout, check.stderr)
        assert check.returncode == 1
        assert "no_checkpoint_support (host3)" in check.stdout
        assert "--experimental" in check.stdout
        moved = dc.cli("migrate", "plain", "--live", "--fallback", "--to", "host3")
        print(moved.stdout, moved.stderr)
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "moved cold instead" in moved.stdout and "no_checkpoint_support" in moved.stdout
        assert "(cold)" in moved.stdout
        after = json.loads(dc.ok("show", "plain", "--json"))
        assert after["host"] == "host3" and after["state"] == "running"
        assert (after["ip"], after["mac"]) == (before["ip"], before["mac"])
    finally:
        _restart_dockerd(dc.home, "host3", criu_bin=None)


def test_failed_restore_resumes_on_the_source(live_cluster: DevCluster) -> None:
    """host2's dockerd runs a criu whose restore fails (`criu check` still passes, so the
    preflight lets it through): the instance resumes on host1 from its own checkpoint."""
    dc = live_cluster
    st = state.load(dc.home)
    assert st is not None
    broken = Path(st.home) / "criu-broken"
    broken.mkdir(exist_ok=True)
    (broken / "criu").write_text(f"""#!/bin/sh
[ "$1" = swrk ] && {{ echo "criu restore disabled by the test" >&2; exit 1; }}
exec {WRAPPER} "$@"
""")
    (broken / "criu").chmod(0o755)
    before = _launch(dc, "resumer", "host1", "--memory", "96M")
    _background(dc, "resumer", COUNTER)
    _restart_dockerd(dc.home, "host2", criu_bin=str(broken))
    try:
        assert_counting_on(dc, "resumer", 3)
        moved = dc.cli("migrate", "resumer", "--live", "--to", "host2")
        print(moved.stdout, moved.stderr)
        assert moved.returncode != 0
        assert "runs on its source host again" in moved.stdout + moved.stderr
        after = json.loads(dc.ok("show", "resumer", "--json"))
        assert after["host"] == "host1" and after["state"] == "running"
        assert (after["ip"], after["mac"]) == (before["ip"], before["mac"])
        # the same processes again (restored from the source's checkpoint), still counting
        assert_counting_on(dc, "resumer", len(counts(dc, "resumer")) + 5)
        # lxcfs binds back as they were: the instance's own view, and the host's lxcfs
        # survived the restore (an earlier layout unmounted it)
        assert _sh(dc, "resumer", "grep -c fuse.lxcfs /proc/self/mountinfo").strip() == "8"
        assert int(_sh(dc, "resumer", "head -1 /proc/meminfo").split()[1]) == 96 * 1024
        _launch(dc, "resumepinger", "host3", "--no-lxcfs")
        assert dc.reaches("resumepinger", str(after["ip"]))
    finally:
        _restart_dockerd(dc.home, "host2", criu_bin=None)


def _restart_dockerd(home: Path, name: str, criu_bin: str | None) -> None:
    """SIGTERM (live-restore keeps containers) and start again; `criu_bin` "" drops
    checkpoint support, None restores the cluster's."""
    st = state.load(home)
    assert st is not None
    hostctl.stop_dockerd(home, name)
    hostctl.start_dockerd(home, name, st.criu if criu_bin is None else criu_bin)



# ------------------------------------------------------------- kill -9 of the server mid-move

LIVE_POINTS = sorted(p for p in faults.POINTS if p.startswith("server.live."))
LIVE_HIT: set[str] = set()
# after the switch the target's copy is the newest: recovery finishes the move forward
FINISHED = {"server.live.switched", "server.live.running", "server.live.image_kept"}


@pytest.fixture(scope="module")
def live_server(live_cluster: DevCluster) -> Iterator[hostctl.FaultServer]:
    # started by us from now on (argv known), armed for each case's point in turn
    fault_server = hostctl.FaultServer(live_cluster.home, hostctl.stop_server(live_cluster.home))
    yield fault_server
    fault_server.disarm()


def _after(point: str) -> str | None:
    """The point of the next case (the server restarts armed for it), None after the last."""
    at = LIVE_POINTS.index(point) + 1
    return LIVE_POINTS[at] if at < len(LIVE_POINTS) else None


@pytest.mark.parametrize("point", LIVE_POINTS)
def test_server_killed_mid_live_migration(live_cluster: DevCluster,
                                          live_server: hostctl.FaultServer,
                                          point: str) -> None:
    """The server dies at `point`; started again, its recovery (live_migrate.recover) rolls
    back (the source resumes from its checkpoint) or finishes: one running copy, same IP and
    MAC, the counter's processes still counting, nothing left on the other host."""
    dc = live_cluster
    live_server.arm(point)  # (already, when the case before restarted it: `then`)
    name = "lf-" + point.rsplit(".", 1)[1].replace("_", "-")
    before = _launch(dc, name, "host1")  # lxcfs on
    _background(dc, name, COUNTER)
    assert_counting_on(dc, name, 2)
    live_server.kill_at(point, lambda: dc.cli("migrate", name, "--live", "--to", "host2"),
                        then=_after(point))  # the server dies on the way
    LIVE_HIT.add(point)
    want = "host2" if point in FINISHED else "host1"

    def settled() -> bool:
        shown = json.loads(dc.ok("show", name, "--json"))
        done = any(e["kind"] in ("migrated", "migrate_failed")
                   for e in hostctl.listed(dc.ok("events", name, "--json")))
        return bool(shown["state"] == "running" and shown["host"] == want and done
                    and not shown.get("options", {}).get("migrating"))
    hostctl.until(settled, f"{name} running on {want} after recovery")
    after = json.loads(dc.ok("show", name, "--json"))
    assert (after["ip"], after["mac"], after["hostname"]) == \
        (before["ip"], before["mac"], before["hostname"])
    other = "host2" if want == "host1" else "host1"

    def one_copy() -> bool:
        running = [c for h in ("host1", "host2", "host3")
                   for c in hostctl.copies(dc.home, h, str(after["id"])) if c[1] == "running"]
        assert len(running) == 1, running
        assert hostctl.copies(dc.home, other, str(after["id"])) == []
        return True
    hostctl.until(one_copy, f"{name}: one running copy, none left on {other}", timeout=60)
    # the same processes (resumed from the checkpoint or restored on the target) count on
    try:
        assert_counting_on(dc, name, len(counts(dc, name)) + 3)
    except AssertionError:
        _logs(dc, want)
        raise
    assert _sh(dc, name, "grep -c fuse.lxcfs /proc/self/mountinfo").strip() == "8"
    dc.ok("delete", name, "--force")


def test_every_live_migration_fault_point_was_hit(live_cluster: DevCluster) -> None:
    assert set(LIVE_POINTS) == LIVE_HIT, f"never hit: {sorted(set(LIVE_POINTS) - LIVE_HIT)}"


def _logs(dc: DevCluster, host: str) -> str:
    """The tails of the server's and a host agent's logs, for a failure message."""
    st = state.load(dc.home)
    assert st is not None
    tails = []
    for path in (dc.home / "server.log", Path(st.host(host).root) / "agent.log"):
        text = path.read_text(errors="replace") if path.exists() else "(none)"
        tails.append(f"--- {path}\n{text[-6000:]}")
    print("\n".join(tails))  # shown with the failure (captured output)
    return "logs in the captured output"


