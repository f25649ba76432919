"""Live migration (CRIU) on a dev-cluster of its own, started with `--criu`.

Why a separate cluster and not the session one: its daemons run --experimental with criu 4.1
(scripts/criu-wrapper) on their PATH, and one test restarts a host's dockerd *without*
checkpoint support; the session cluster stays a plain production-like setup. Every skip
prints its reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard import faults
from dockyard.devcluster import plumbing, state
from tests.e2e import hostctl
from tests.e2e.conftest import DevCluster
from tests.requirements import message, missing

WRAPPER = Path(__file__).resolve().parents[2] / "scripts" / "criu-wrapper"
NET = "live"
SUBNET = "10.241.40.0/24"
COUNTER = ("i=0; while :; do i=$((i+1)); read up rest < /proc/uptime; "
           "echo \"$i $up\" >> /counter; usleep 100000; done")


def _skip(what: str, step: str) -> None:
    print(f"SKIP test_live_migrate: {message(what, step)}", file=sys.stderr, flush=True)
    missing(what, step)


@pytest.fixture(scope="module")
def live_cluster() -> Iterator[DevCluster]:
    if os.geteuid() != 0 or shutil.which("ovs-vswitchd") is None:
        _skip("root or Open vSwitch for the dev-cluster", "scripts/setup.sh, run as root")
    build = subprocess.run([str(WRAPPER), "--build"], capture_output=True, text=True,
                           timeout=600)
    if build.returncode != 0:
        _skip(f"the criu 4.1 tree ({build.stderr.strip()[-300:]})",
              "scripts/setup.sh (scripts/criu-wrapper --build)")
    check = subprocess.run([str(WRAPPER), "check"], capture_output=True, text=True,
                           timeout=120)
    if check.returncode != 0:
        _skip(f"a kernel `criu check` accepts ({(check.stderr or check.stdout)[-300:]})",
              "a kernel with CRIU support on the test machine")
    base = Path(tempfile.mkdtemp(prefix="dockyard-live-"))
    env = {**os.environ, "DOCKYARD_CONFIG": str(base / "config.json"), "COLUMNS": "200"}
    env.pop("DOCKYARD_URL", None)
    env.pop("DOCKYARD_TOKEN", None)
    dc = DevCluster(home=base / "home", env=env)
    try:
        dc.ok("dev-cluster", "up", "--criu", "--hosts", "3", "--home", str(dc.home),
              "--heartbeat-timeout", "6", "--resync-interval", "10")
        dc.ok("network", "create", NET, "--subnet", SUBNET)
        yield dc
    finally:
        dc.cli("dev-cluster", "down", "--home", str(dc.home))
        shutil.rmtree(base, ignore_errors=True)


def _launch(dc: DevCluster, name: str, host: str) -> dict[str, object]:
    dc.ok("launch", "dockyard/busybox", name, "--host", host, "--network", NET, "--no-lxcfs")
    shown: dict[str, object] = json.loads(dc.ok("show", name, "--json"))
    return shown


def _sh(dc: DevCluster, name: str, script: str) -> str:
    return dc.ok("exec", name, "--", "sh", "-c", script)


def _background(dc: DevCluster, name: str, script: str) -> None:
    """A process that outlives the exec (re-parented to the container's init)."""
    _sh(dc, name, f"sh -c '{script}' </dev/null >/dev/null 2>&1 &")


def _counter_lines(dc: DevCluster, name: str) -> list[tuple[int, float]]:
    rows = []
    for line in _sh(dc, name, "cat /counter").splitlines():
        parts = line.split()
        if len(parts) == 2:
            rows.append((int(parts[0]), float(parts[1])))
    return rows


def test_live_move_keeps_counting(live_cluster: DevCluster) -> None:
    dc = live_cluster
    before = _launch(dc, "counter", "host1")
    _background(dc, "counter", COUNTER)
    time.sleep(1.5)
    check = dc.cli("migrate", "counter", "--live", "--check", "--to", "host2")
    print(check.stdout, check.stderr)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "possible" in check.stdout
    moved = dc.cli("migrate", "counter", "--live", "--to", "host2", "--json")
    print(moved.stdout, moved.stderr)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    result = json.loads(moved.stdout)
    assert result["mode"] == "live" and result["target"] == "host2"
    downtime = float(result["downtime"])
    time.sleep(1.5)
    after = json.loads(dc.ok("show", "counter", "--json"))
    assert after["host"] == "host2" and after["state"] == "running"
    assert (after["ip"], after["mac"]) == (before["ip"], before["mac"])
    assert after["generation"] == int(str(before["generation"])) + 1
    # the restored processes see eth0 with the same address
    eth0 = _sh(dc, "counter", "cat /sys/class/net/eth0/address; ip -4 -o addr show eth0")
    assert str(before["mac"]).lower() in eth0.lower() and f"{before['ip']}/" in eth0
    rows = _counter_lines(dc, "counter")
    counts = [i for i, _ in rows]
    assert counts == list(range(1, len(counts) + 1)), "the counter restarted or skipped"
    gaps = [b - a for (_, a), (_, b) in zip(rows, rows[1:], strict=False)]
    print(f"live downtime {downtime:.3f} s, largest counter gap {max(gaps):.3f} s, "
          f"{len(rows)} lines, timings {result}")
    # /proc/uptime has 10 ms steps; one 0.1 s period plus that on top of the downtime
    assert max(gaps) <= downtime + 0.15, (max(gaps), downtime)
    assert len(rows) > 25  # it kept counting after the move
    # reachable at its address from another host
    _launch(dc, "livepinger", "host3")
    assert dc.reaches("livepinger", str(after["ip"]))


def test_preflight_refuses_an_established_tcp_connection(live_cluster: DevCluster) -> None:
    dc = live_cluster
    server = _launch(dc, "tcpserver", "host2")
    _launch(dc, "tcpclient", "host1")
    _background(dc, "tcpserver", "while :; do sleep 100000 | nc -l -p 7000; done")
    time.sleep(0.5)
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
    before = _launch(dc, "resumer", "host1")
    _background(dc, "resumer", COUNTER)
    _restart_dockerd(dc.home, "host2", criu_bin=str(broken))
    try:
        time.sleep(1.0)
        moved = dc.cli("migrate", "resumer", "--live", "--to", "host2")
        print(moved.stdout, moved.stderr)
        assert moved.returncode != 0
        assert "runs on its source host again" in moved.stdout + moved.stderr
        time.sleep(1.5)
        after = json.loads(dc.ok("show", "resumer", "--json"))
        assert after["host"] == "host1" and after["state"] == "running"
        assert (after["ip"], after["mac"]) == (before["ip"], before["mac"])
        counts = [i for i, _ in _counter_lines(dc, "resumer")]
        time.sleep(0.6)
        later = [i for i, _ in _counter_lines(dc, "resumer")]
        # the same processes again (restored from the source's checkpoint), still counting
        assert later == list(range(1, len(later) + 1)) and len(later) > len(counts) > 15
        _launch(dc, "resumepinger", "host3")
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
def live_server_argv(live_cluster: DevCluster) -> Iterator[list[str]]:
    argv = hostctl.stop_server(live_cluster.home)
    hostctl.start_server(live_cluster.home, argv)  # started by us from now on: argv is known
    yield argv
    if not plumbing.alive(hostctl.server_pid(live_cluster.home)):
        hostctl.start_server(live_cluster.home, argv)


@pytest.mark.parametrize("point", LIVE_POINTS)
def test_server_killed_mid_live_migration(live_cluster: DevCluster, live_server_argv: list[str],
                                          point: str) -> None:
    """The server dies at `point`; started again, its recovery (live_migrate.recover) rolls
    back (the source resumes from its checkpoint) or finishes: one running copy, same IP and
    MAC, the counter's processes still counting, nothing left on the other host."""
    dc = live_cluster
    name = "lf-" + point.rsplit(".", 1)[1].replace("_", "-")
    before = _launch(dc, name, "host1")
    _background(dc, name, COUNTER)
    time.sleep(0.5)
    hostctl.kill_server_at(dc.home, live_server_argv, point,  # the server dies on the way
                           lambda: dc.cli("migrate", name, "--live", "--to", "host2"))
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
    first = [i for i, _ in _counter_lines(dc, name)]
    time.sleep(0.6)
    counts = [i for i, _ in _counter_lines(dc, name)]
    # the same processes (resumed from the checkpoint or restored on the target) count on
    assert counts == list(range(1, len(counts) + 1)) and len(counts) > len(first), \
        (counts[-5:], _logs(dc, want))
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


