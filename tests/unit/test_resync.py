"""The resync's skip logic (agent/resync.py) against fakes at the seams: an instance is left
alone only while every cheap read agrees with its last converged pass, and each kind of
drift sends it to a full pass."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from dockyard.adapters.docker_engine import ContainerState
from dockyard.adapters.hostlinks import LinkState
from dockyard.agent.hostfiles import InstanceFiles
from dockyard.agent.reconciler import Reconciler
from dockyard.agent.resync import Converged, HostView, reason
from dockyard.model.agent import DesiredInstance
from dockyard.model.instance import DesiredState, Limits
from tests.unit.fakes import FakeEngine, FakeNetwork
from tests.unit.test_reconciler import desired

NOW, DEEP = 1000.0, 600.0


@dataclass
class FakeProbes:
    gone: set[int] = field(default_factory=set)  # pids no longer in their container
    io_drift: bool = False
    touched: set[str] = field(default_factory=set)  # instance ids whose files changed

    def runs_in(self, pid: int, container_id: str) -> bool:
        return pid not in self.gone

    def io_matches(self, pid: int, d: DesiredInstance) -> bool:
        return not self.io_drift

    def files_unchanged(self, instance_id: str) -> bool:
        return instance_id not in self.touched


def view(d: DesiredInstance, status: str = "running", cid: str = "c1", master: int = 7,
         up: bool = True, veth: bool = True) -> HostView:
    links = {d.network.bridge: LinkState(index=7, master=0, up=True)}
    if veth:
        links[f"dyh{d.id}"] = LinkState(index=20, master=master, up=up)
    return HostView({f"dy-{d.id}": ContainerState(cid, f"dy-{d.id}", status, {
        "dockyard.generation": str(d.generation)})}, links)


def memo(d: DesiredInstance, at: float = NOW - 60) -> Converged:
    return Converged(d, "c1", 4242, at, deep_after=1.0)


def test_an_instance_as_its_last_pass_left_it_is_skipped() -> None:
    d = desired(creating=False)
    assert reason(d, memo(d), view(d), FakeProbes(), NOW, DEEP) is None


@pytest.mark.parametrize(("change", "why"), [
    (lambda d: dict(m=None), "no converged pass"),
    (lambda d: dict(m=memo(d, at=NOW - DEEP - 1)), "full pass due"),
    (lambda d: dict(d=desired(creating=False, mac="02:d7:0a:00:00:09")), "desired mac changed"),
    (lambda d: dict(d=desired(creating=False, revision=2)), "desired revision changed"),
    (lambda d: dict(v=HostView({}, view(d).links)), "container gone"),
    (lambda d: dict(v=view(d, cid="c2")), "container gone or replaced"),
    (lambda d: dict(v=view(d, status="exited")), "not running"),
    (lambda d: dict(p=FakeProbes(gone={4242})), "restarted"),
    (lambda d: dict(v=view(d, veth=False)), "host veth missing"),
    (lambda d: dict(v=view(d, up=False)), "host veth missing or down"),
    (lambda d: dict(v=view(d, master=0)), "not on its bridge"),
    (lambda d: dict(p=FakeProbes(io_drift=True)), "disk throttles"),
    (lambda d: dict(p=FakeProbes(touched={d.id})), "files changed"),
])
def test_each_drift_sends_the_instance_to_a_full_pass(change: Any, why: str) -> None:
    d = desired(creating=False)
    parts: dict[str, Any] = dict(d=d, m=memo(d), v=view(d), p=FakeProbes()) | change(d)
    got = reason(parts["d"], parts["m"], parts["v"], parts["p"], NOW, DEEP)
    assert got is not None and why in got


def test_the_creating_flag_cleared_after_the_first_report_is_no_reason() -> None:
    d = desired(creating=False)
    assert reason(d, memo(desired(creating=True)), view(d), FakeProbes(), NOW, DEEP) is None


def test_a_stopped_instance_that_runs_or_is_plumbed_is_synced() -> None:
    d = desired(creating=False, desired_state=DesiredState.stopped)
    m = replace(memo(d), pid=0)
    assert reason(d, m, view(d, status="exited", veth=False), FakeProbes(), NOW, DEEP) is None
    assert reason(d, m, view(d, status="running", veth=False), FakeProbes(), NOW, DEEP)
    assert reason(d, m, view(d, status="exited"), FakeProbes(), NOW, DEEP)


def test_network_rates_always_get_the_full_pass() -> None:
    d = desired(creating=False, limits=Limits(cpuset="0-1", egress_bps=8_000_000))
    assert reason(d, memo(d), view(d), FakeProbes(), NOW, DEEP) is not None


def test_the_reconciler_records_a_converged_pass_and_drops_it_when_one_starts(
        tmp_path: Path) -> None:
    engine = FakeEngine()
    rec = Reconciler(engine, FakeNetwork(), InstanceFiles(tmp_path),  # type: ignore[arg-type]
                     "cluster-1")
    d = desired()
    rec.sync(d)
    info = engine.containers["dy-abc123"]
    got = rec.converged["abc123"]
    assert (got.desired, got.container_id, got.pid) == (d, info.id, info.pid)
    engine.fail_start = True
    engine.stop("dy-abc123", 1)
    with pytest.raises(Exception, match="start failed"):
        rec.sync(desired(creating=False))
    assert "abc123" not in rec.converged  # a failed pass leaves nothing to skip on


def test_files_unchanged_until_someone_writes_them(tmp_path: Path) -> None:
    files = InstanceFiles(tmp_path)
    d = desired()
    assert not files.unchanged(d.id)  # never written by this agent
    files.write(d)
    assert files.unchanged(d.id)
    with open(files.hosts(d.id), "a") as fh:
        fh.write("10.255.255.254 drifted\n")
    assert not files.unchanged(d.id)
    files.write(d)  # the full pass repairs it
    assert files.unchanged(d.id) and "drifted" not in files.hosts(d.id).read_text()


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real agent runtime with fakes at the Docker and netlink seams, no threads: the test
    drains the queue itself. Every host veth of a synced instance shows on its bridge."""
    from dockyard.agent import resync, runtime
    from dockyard.config import AgentSettings

    engine, network = FakeEngine(), FakeNetwork()
    monkeypatch.setattr(runtime, "DockerEngine", lambda url: engine)
    links = {"dybn1": LinkState(7, 0, True)}
    monkeypatch.setattr(runtime.hostlinks, "link_states", lambda: dict(links))
    monkeypatch.setattr(resync.cgroups, "runs_in", lambda pid, cid: pid > 0)
    agent = runtime.Agent(AgentSettings(server="http://127.0.0.1:1", token="t", name="h",
                                        home=tmp_path, vm_accel="none"))
    agent.cluster = "cluster-1"
    agent.client = type("NoServer", (), {"post": lambda self, path, body=None: None})()
    agent.reconciler = Reconciler(engine, network, agent.files,  # type: ignore[arg-type]
                                  "cluster-1")
    agent.test_links = links  # type: ignore[attr-defined]
    return agent


def drain(agent: Any) -> list[str]:
    done = []
    while len(agent.queue):
        key = agent.queue.get()
        agent._sync_one(key)
        agent.queue.done(key)
        agent.test_links[f"dyh{key}"] = LinkState(20 + len(done), 7, True)
        done.append(key)
    return sorted(done)


def test_a_full_resync_enqueues_only_the_instances_that_differ(agent: Any) -> None:
    from dockyard.model.agent import WatchReply

    both = [desired(id="aaa111", name="a", creating=False),
            desired(id="bbb222", name="b", ip="10.0.0.6", mac="02:d7:0a:00:00:06",
                    creating=False)]
    full = WatchReply(revision=3, full=True, instances=both, networks=[])
    agent._apply(full)
    assert drain(agent) == ["aaa111", "bbb222"]  # nothing converged yet: every one
    agent._apply(full)
    assert drain(agent) == []  # as their passes left them: no pass at all
    with open(agent.files.hosts("bbb222"), "a") as fh:
        fh.write("10.255.255.254 drifted\n")
    agent._apply(full)
    assert drain(agent) == ["bbb222"]
    assert "drifted" not in agent.files.hosts("bbb222").read_text()  # repaired by its pass
    del agent.test_links["dyhaaa111"]
    agent._apply(full)
    assert drain(agent) == ["aaa111"]
