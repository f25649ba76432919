"""An instance that left this host while the agent was still making its copy (a migration
rolled back after its switch: the server died there, restarted and switched it back): the
server's `discard` must leave no copy behind. Before, a discard that found no container yet
returned at once and left the old desired state in the agent, whose sync then created and
started the copy; the orphan scan only stops such a copy, so it stayed on the host for good.

The real agent (runtime, API app, reconciler) with fakes at the Docker and netlink seams; the
sync is held at the fault point `agent.create.files_written` (a pull or create under way)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard import faults
from dockyard.adapters.lxcfs import Lxcfs
from dockyard.agent import runtime
from dockyard.agent.api import create_agent_app
from dockyard.agent.reconciler import Reconciler
from dockyard.agent.workqueue import WorkQueue
from dockyard.config import AgentSettings
from dockyard.model import ids
from dockyard.model.agent import WatchReply
from tests.unit.asgi import AppClient
from tests.unit.fakes import FakeEngine, FakeNetwork
from tests.unit.test_reconciler import desired

SECRET = "s3cret-of-this-host"
ID = "abc123"


class Held:
    """Holds the agent's sync at `agent.create.files_written` until `go` is set."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def __call__(self, point: str) -> None:
        if point == "agent.create.files_written":
            self.reached.set()
            assert self.go.wait(10)


class NoServer:
    """The agent's client: reports go nowhere (the server is not under test)."""

    def post(self, path: str, body: Any = None) -> None:
        return None


@pytest.fixture
def held() -> Iterator[Held]:
    hook = Held()
    faults.install(hook)
    yield hook
    hook.go.set()
    faults.install(None)


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> runtime.Agent:
    engine = FakeEngine()
    monkeypatch.setattr(runtime, "DockerEngine", lambda url: engine)
    agent = runtime.Agent(AgentSettings(server="http://127.0.0.1:1", token="t", name="host2",
                                        home=tmp_path, vm_accel="none"))
    agent.cluster = "cluster-1"
    agent.client = NoServer()  # type: ignore[assignment]
    agent.reconciler = Reconciler(engine, FakeNetwork(), agent.files,  # type: ignore[arg-type]
                                  "cluster-1")
    threading.Thread(target=agent._work, daemon=True).start()
    return agent


def _discard(agent: runtime.Agent, tmp_path: Path, out: list[httpx.Response]) -> None:
    app = create_agent_app(agent.engine, SECRET, "cluster-1", Lxcfs(str(tmp_path / "lxcfs")),
                           registry="127.0.0.1:1", home=tmp_path / "api",
                           forget=agent.forget)
    out.append(AppClient(app).post(f"/v1/instances/{ID}/discard",
                                   params={"generation": 2, "revision": 7},
                                   headers={"Authorization": f"Bearer {SECRET}"}))


def test_a_discard_during_the_sync_that_makes_the_copy_leaves_no_copy(
        agent: runtime.Agent, held: Held, tmp_path: Path) -> None:
    agent._apply(WatchReply(revision=5, full=False, instances=[desired(id=ID, generation=2,
                                                                        revision=5)],
                            networks=[]))
    assert held.reached.wait(10)  # the sync is making the copy
    answers: list[httpx.Response] = []
    discard = threading.Thread(target=_discard, args=(agent, tmp_path, answers))
    discard.start()
    discard.join(0.5)  # (a discard that does not wait for the sync has answered by now)
    held.go.set()  # the sync goes on: creates and starts the copy
    discard.join(20)
    assert not discard.is_alive() and answers[0].status_code == 204, answers
    assert agent.queue.wait_idle(ID, 10)
    assert agent.engine.inspect(ids.container_name(ID)) is None
    assert ID not in agent.desired


def test_a_desired_state_from_before_the_move_away_is_not_taken_again(
        agent: runtime.Agent, held: Held) -> None:
    held.go.set()
    agent.forget(ID, 7)  # the server switched the instance away at revision 7
    agent._apply(WatchReply(revision=6, full=False, instances=[desired(id=ID, generation=2,
                                                                        revision=5)],
                            networks=[]))  # made before the switch, answered after it
    assert ID not in agent.desired
    agent._apply(WatchReply(revision=9, full=False, instances=[desired(id=ID, generation=4,
                                                                        revision=9)],
                            networks=[]))  # placed here again later: taken
    assert agent.desired[ID].generation == 4
    assert agent.queue.wait_idle(ID, 10)


def test_wait_idle_waits_for_the_pass_under_way_and_takes_no_worker_wakeup() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get() == "a"
    waited: list[bool] = []
    waiter = threading.Thread(target=lambda: waited.append(queue.wait_idle("a", 10)))
    waiter.start()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.add("b")  # must reach the worker, not the thread in wait_idle
    worker.join(10)
    assert got == ["b"]
    assert waiter.is_alive()  # "a" is still being processed
    queue.done("a")
    waiter.join(10)
    assert waited == [True]
    assert not queue.wait_idle("b", 0.05)  # "b" is still being processed: timed out
