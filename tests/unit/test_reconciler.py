"""The level-triggered reconciler against fakes: convergence, idempotence, rollback, fencing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard.agent.hostfiles import InstanceFiles
from dockyard.agent.reconciler import Reconciler
from dockyard.agent.workqueue import WorkQueue
from dockyard.model.agent import DesiredInstance, DesiredNetwork
from dockyard.model.instance import DesiredState, Limits
from tests.unit.fakes import FakeEngine, FakeNetwork

NET = DesiredNetwork(id="n1", name="default", bridge="dybn1", subnet="10.0.0.0/24",
                     gateway="10.0.0.1")


def desired(**over: Any) -> DesiredInstance:
    base: dict[str, Any] = dict(
        id="abc123", name="web", project="default", generation=1,
        desired_state=DesiredState.running, restart_serial=0, image="img", hostname="web",
        network=NET, ip="10.0.0.5", prefixlen=24, mac="02:d7:0a:00:00:05", dns=["10.0.0.1"],
        limits=Limits(cpuset="0-1"), volumes=[], env={}, revision=1, creating=True)
    base.update(over)
    return DesiredInstance(**base)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Reconciler, FakeEngine, FakeNetwork, InstanceFiles]:
    engine, network, files = FakeEngine(), FakeNetwork(), InstanceFiles(tmp_path)
    return Reconciler(engine, network, files, "cluster-1"), engine, network, files  # type: ignore[arg-type]


def test_create_start_plumb_and_files(parts: Any) -> None:
    rec, engine, network, files = parts
    obs = rec.sync(desired())
    assert obs.state == "running" and obs.container_id == "c-dy-abc123"
    spec = engine.specs["dy-abc123"]
    assert spec.labels == {"dockyard.cluster": "cluster-1", "dockyard.instance": "abc123",
                           "dockyard.name": "web", "dockyard.project": "default",
                           "dockyard.generation": "1"}
    assert {m.target for m in spec.mounts} == {"/etc/hosts", "/etc/resolv.conf"}
    assert "10.0.0.5\tweb" in files.hosts("abc123").read_text()
    assert files.resolv("abc123").read_text() == "nameserver 10.0.0.1\n"
    assert network.bridges == {"dybn1"} and "abc123" in network.veths


def test_a_copy_made_after_a_move_tells_the_network_it_arrived(parts: Any) -> None:
    """Generation 1 is an instance's first home; a later one lived on another host before
    (its switch may still send its MAC there: agent/network.py `arrived`)."""
    rec, _, network, _ = parts
    rec.sync(desired())
    rec.sync(desired(id="moved1", name="moved", generation=3, ip="10.0.0.6",
                     mac="02:d7:0a:00:00:06"))
    assert network.arrivals == ["moved1"]


def test_command_and_entrypoint_reach_the_container(parts: Any) -> None:
    rec, engine, _, _ = parts
    rec.sync(desired(entrypoint=["/bin/sh", "-c"], command=["httpd -f"]))
    spec = engine.specs["dy-abc123"]
    assert (spec.entrypoint, spec.command) == (["/bin/sh", "-c"], ["httpd -f"])
    rec.sync(desired(id="def456", name="db"))  # absent: the image's own
    assert (engine.specs["dy-def456"].entrypoint, engine.specs["dy-def456"].command) == (
        None, None)


def test_second_pass_is_a_no_op(parts: Any) -> None:
    rec, engine, _, _ = parts
    rec.sync(desired())
    calls = list(engine.calls)
    assert rec.sync(desired(creating=False)).state == "running"
    assert engine.calls == calls


def test_failed_first_create_rolls_back_everything(parts: Any) -> None:
    rec, engine, network, files = parts
    network.fail_plumb = True
    obs = rec.sync(desired())
    assert obs.state == "deleted" and obs.failed_create and "veth" in (obs.message or "")
    assert engine.containers == {} and network.veths == set()
    assert not files.dir("abc123").exists()


def test_unknown_image_rolls_back(parts: Any) -> None:
    rec, engine, _, files = parts
    obs = rec.sync(desired(image="nope"))
    assert obs.failed_create and engine.containers == {} and not files.dir("abc123").exists()


def test_failure_after_first_create_is_an_error_not_a_rollback(parts: Any) -> None:
    rec, engine, network, _ = parts
    rec.sync(desired())
    engine.containers.clear()  # someone removed the container behind our back
    network.fail_plumb = True
    with pytest.raises(Exception, match="veth"):
        rec.sync(desired(creating=False))


def test_stop_then_start_replumbs_same_ip_and_mac(parts: Any) -> None:
    rec, engine, network, _ = parts
    rec.sync(desired())
    assert rec.sync(desired(desired_state=DesiredState.stopped)).state == "stopped"
    assert "abc123" not in network.veths
    obs = rec.sync(desired(creating=False))
    pid = engine.containers["dy-abc123"].pid
    assert obs.state == "running"
    assert network.plumbed[pid].mac == "02:d7:0a:00:00:05"
    assert network.plumbed[pid].addresses == ["10.0.0.5/24"]


def test_restart_serial_restarts_once(parts: Any) -> None:
    rec, engine, _, _ = parts
    rec.sync(desired())
    first_pid = engine.containers["dy-abc123"].pid
    rec.sync(desired(restart_serial=1, creating=False))
    second_pid = engine.containers["dy-abc123"].pid
    assert second_pid != first_pid
    rec.sync(desired(restart_serial=1, creating=False))
    assert engine.containers["dy-abc123"].pid == second_pid


def test_delete_removes_container_veth_and_files(parts: Any) -> None:
    rec, engine, network, files = parts
    rec.sync(desired())
    obs = rec.sync(desired(desired_state=DesiredState.deleted))
    assert obs.state == "deleted" and not obs.failed_create
    assert engine.containers == {} and network.veths == set()
    assert not files.dir("abc123").exists()
    assert rec.sync(desired(desired_state=DesiredState.deleted)).state == "deleted"


def test_stale_generation_is_set_aside_stopped_and_replaced(parts: Any) -> None:
    rec, engine, _, _ = parts
    rec.sync(desired())
    old_id = engine.containers["dy-abc123"].id
    obs = rec.sync(desired(generation=2, creating=False))
    assert obs.state == "running"
    assert engine.containers["dy-abc123"].labels["dockyard.generation"] == "2"
    aside = [c for c in engine.containers.values() if c.id == old_id]
    assert len(aside) == 1 and aside[0].status == "exited"  # fenced: stopped, not deleted
    assert aside[0].name.startswith("dy-abc123.stale-g1-")
    assert engine.calls.index(f"stop {old_id}") < engine.calls.index("create dy-abc123", 1)
    rec.sync(desired(generation=2, creating=False))  # the set-aside copy is never started
    assert [c.status for c in engine.containers.values() if c.id == old_id] == ["exited"]
    rec.sync(desired(generation=2, desired_state=DesiredState.deleted))
    assert engine.containers == {}  # deleting the instance removes its set-aside copies


def test_containers_carry_the_host_label(parts: Any, tmp_path: Path) -> None:
    engine = parts[1]
    rec = Reconciler(engine, FakeNetwork(), InstanceFiles(tmp_path / "h"), "cluster-1",
                     host="h2")
    rec.sync(desired())
    assert engine.containers["dy-abc123"].labels["dockyard.host"] == "h2"


def test_other_clusters_container_is_left_alone(parts: Any, tmp_path: Path) -> None:
    rec, engine, _, _ = parts
    other = Reconciler(engine, FakeNetwork(), InstanceFiles(tmp_path / "o"), "cluster-2")
    other.sync(desired())
    obs = rec.sync(desired(desired_state=DesiredState.deleted))
    assert obs.state == "error" and "another cluster" in (obs.message or "")
    assert "dy-abc123" in engine.containers


def test_shared_pool_cpuset_is_updated_live(parts: Any) -> None:
    rec, engine, _, _ = parts
    rec.sync(desired())
    pid = engine.containers["dy-abc123"].pid
    rec.sync(desired(limits=Limits(cpuset="0"), creating=False))
    assert engine.containers["dy-abc123"].cpuset == "0"
    assert engine.containers["dy-abc123"].pid == pid


def test_live_resize_updates_only_what_changed(parts: Any) -> None:
    rec, engine, _, _ = parts
    rec.sync(desired(limits=Limits(cpuset="0-1", memory_bytes=64 << 20, pids=100)))
    pid = engine.containers["dy-abc123"].pid
    engine.calls.clear()
    rec.sync(desired(limits=Limits(cpuset="0-1", memory_bytes=128 << 20, pids=200, cpus=0.5),
                     creating=False))
    assert engine.calls == ["update c-dy-abc123 ['cpu_quota', 'memory', 'pids_limit']"]
    res = engine.containers["dy-abc123"].resources
    assert (res.memory, res.pids_limit, res.cpu_quota) == (128 << 20, 200, 50_000)
    assert engine.containers["dy-abc123"].pid == pid
    engine.calls.clear()
    rec.sync(desired(limits=Limits(cpuset="0-1", memory_bytes=128 << 20, pids=200, cpus=0.5),
                     creating=False))
    assert engine.calls == []


def test_workqueue_is_serial_per_key_and_dedupes() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    key = queue.get()
    assert key == "a"
    queue.add("a")  # while processing: marked dirty, not handed to another worker
    assert queue.get() == "b"
    queue.done("b")
    queue.done("a")  # dirty → queued again
    assert queue.get() == "a"
    queue.done("a")
    queue.close()
    assert queue.get() is None


def test_rollback_goes_on_when_one_step_fails(parts: Any) -> None:
    from dockyard.errors import Conflict

    rec, engine, network, files = parts

    def refuse(instance_id: str) -> None:
        raise Conflict(f"dyh{instance_id} is not a veth")

    network.fail_plumb = True
    network.unplumb = refuse  # a name held by something that is not ours
    obs = rec.sync(desired())
    assert obs.failed_create
    assert engine.containers == {} and not files.dir("abc123").exists()


class RecordingDisks:
    """ContainerDisks at its seam: records into the engine's call log, so the order shows."""

    def __init__(self, engine: FakeEngine, root: Path) -> None:
        self.engine, self.root = engine, root

    def dir(self, instance_id: str) -> Path:
        return self.root / instance_id

    def ensure(self, instance_id: str, layer_dir: str, size: int) -> None:
        self.dir(instance_id).mkdir(parents=True, exist_ok=True)
        self.engine.calls.append(f"disk {instance_id} {size}")

    def release(self, instance_id: str) -> None:
        self.dir(instance_id).rmdir()
        self.engine.calls.append(f"release {instance_id}")


def test_a_container_disk_is_made_before_start_and_released_before_remove(
        tmp_path: Path) -> None:
    engine, network = FakeEngine(), FakeNetwork()
    rec = Reconciler(engine, network, InstanceFiles(tmp_path), "cluster-1",  # type: ignore[arg-type]
                     disks=RecordingDisks(engine, tmp_path / "disks"))  # type: ignore[arg-type]
    def sized(**over: Any) -> DesiredInstance:
        return desired(disk_bytes=2**30, **over)

    assert rec.sync(sized()).state == "running"
    assert engine.calls == ["create dy-abc123", "disk abc123 1073741824", "start dy-abc123"]
    rec.sync(sized(desired_state=DesiredState.stopped, creating=False))
    engine.calls.clear()
    rec.sync(sized(creating=False))  # a restart mounts it again (a rebooted host)
    assert engine.calls[:2] == ["disk abc123 1073741824", "start dy-abc123"]
    engine.calls.clear()
    assert rec.sync(sized(desired_state=DesiredState.deleted)).state == "deleted"
    assert engine.calls == ["stop dy-abc123", "release abc123", "remove dy-abc123"]
    engine.fail_start = True  # a failed launch releases the disk it made
    engine.calls.clear()
    assert rec.sync(sized()).failed_create
    assert engine.calls[-3:] == ["stop dy-abc123", "release abc123", "remove dy-abc123"]
    assert engine.containers == {} and not (tmp_path / "disks" / "abc123").exists()
class CountingLimits:
    """Records the limit checks a sync makes (the real ones are netlink and cgroup reads)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def ensure_io(self, pid: int, limits: Limits) -> None:
        self.calls.append("io")

    def ensure_rates(self, pid: int, instance_id: str, limits: Limits) -> None:
        self.calls.append("rates")


def test_create_without_limits_reads_no_tc_or_io(tmp_path: Path) -> None:
    limits = CountingLimits()
    rec = Reconciler(FakeEngine(), FakeNetwork(), InstanceFiles(tmp_path), "cluster-1",  # type: ignore[arg-type]
                     limits=limits)
    assert rec.sync(desired()).state == "running"
    assert limits.calls == []  # a container just made has no throttle and no tbf to undo
    rec.sync(desired(id="def456", name="db", limits=Limits(ingress_bps=10**6, read_bps=10**6)))
    assert limits.calls == ["io", "rates"]
    rec.sync(desired(creating=False))  # a later pass checks what is in force
    assert limits.calls == ["io", "rates", "io", "rates"]


def test_own_start_event_is_recognised_once(parts: Any) -> None:
    rec, engine, _, _ = parts
    obs = rec.sync(desired())
    assert rec.own_start(obs.container_id) is True
    assert rec.own_start(obs.container_id) is False  # a later start (a crash restart) is not
    assert rec.own_start("c-other") is False


def test_failed_start_is_not_taken_for_own(parts: Any) -> None:
    rec, engine, _, _ = parts
    engine.fail_start = True
    obs = rec.sync(desired())
    assert obs.state == "deleted" and obs.failed_create
    assert rec.own_start("c-dy-abc123") is False
