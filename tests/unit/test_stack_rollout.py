"""Health and rollouts of stacks without Docker: the pure health mapping (table-driven), the
convergence lease (two owners, expiry), the loop's `needs_work` (table-driven), and a whole
health-gated update, its automatic rollback, `rollback` and `history` on a real SQLite store
with the fake instance service of test_stack_reconciler (instances' health set by the test,
as agents would report it)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from dockyard.errors import Conflict
from dockyard.model.health import HealthcheckSpec
from dockyard.server import stacks, stacks_loop
from dockyard.server.bootstrap import init_store
from dockyard.server.context import ServerContext
from dockyard.stacks.planner import Health
from dockyard.stacks.replicas import health_of
from dockyard.store import stacks as store
from dockyard.store.db import Database
from dockyard.store.stacks import ReplicaState, ServiceState, StackState
from dockyard.store.tables import InstanceRow
from tests.postgres import fresh_database
from tests.unit.test_stack_reconciler import (  # noqa: F401  (fixtures)
    FakeInstances,
    ctx,
    fake,
    project,
    spec_of,
)

H, S, U = Health.healthy, Health.starting, Health.unhealthy


@pytest.mark.parametrize(("state", "docker", "up_for", "monitor", "want"), [
    ("creating", "none", None, 5, S),
    ("starting", "none", None, 5, S),
    ("running", "healthy", 0.1, 5, H),  # healthy ends the window early
    ("running", "starting", 1.0, 5, S),  # inside the window
    ("running", "unhealthy", 1.0, 5, S),  # may still pass before the window ends
    ("running", "none", None, 0, S),  # not seen running yet
    ("running", "none", 0.0, 0, H),  # no healthcheck, no monitor: running is enough
    ("running", "starting", 6.0, 5, U),  # window over, never healthy
    ("running", "unhealthy", 6.0, 5, U),
    ("stopped", "none", 9.0, 5, U),
    ("error", "none", None, 5, U),
    (None, "none", None, 5, U),  # the instance is gone
])
def test_health_of(state: str | None, docker: str, up_for: float | None, monitor: float,
                   want: Health) -> None:
    assert health_of(state, docker, up_for, monitor) is want


def test_healthcheck_as_docker_takes_it() -> None:
    check = HealthcheckSpec.model_validate({"test": ["CMD-SHELL", "true"], "interval": 1,
                                            "timeout": 0.5, "retries": 2,
                                            "start_period": 60})
    assert check.docker() == {"test": ["CMD-SHELL", "true"], "interval": 1_000_000_000,
                              "timeout": 500_000_000, "retries": 2,
                              "start_period": 60_000_000_000}
    argv = HealthcheckSpec.model_validate({"test": ["test", "-f", "/x"], "interval": 1e-6})
    assert argv.test == ("CMD", "test", "-f", "/x") and argv.interval == 0.001
    for bad in ({"test": ["CMD"]}, {"test": ["CMD", "x"], "interval": -1},
                {"test": ["CMD", "x"], "timeout": "2s"}, {"test": ["CMD", "x"], "retries": 0},
                {"test": ["CMD", "x"], "start_period": 1e9}):
        with pytest.raises(ValueError):
            HealthcheckSpec.model_validate(bad)


def test_the_lease_is_one_servers_at_a_time(ctx: ServerContext,  # noqa: F811
                                            fake: FakeInstances) -> None:  # noqa: F811
    stacks.deploy(ctx, project(ctx), spec_of("services:\n  web:\n    image: img:1\n"))
    with ctx.db.read() as sess:
        stack_id = store.get(sess, project(ctx), "shop").id
    now = datetime.now(UTC)
    later = now + timedelta(seconds=30)
    with ctx.db.session() as sess:
        assert store.take_lease(sess, stack_id, "a", now, later)
        assert not store.take_lease(sess, stack_id, "b", now, later)
        assert store.take_lease(sess, stack_id, "a", now, later)  # renewed
        # a's lease expired (its server died): b takes it over
        assert store.take_lease(sess, stack_id, "b", later + timedelta(seconds=1),
                                later + timedelta(seconds=31))
        assert not store.take_lease(sess, stack_id, "a", later, later)
        store.release_lease(sess, stack_id, "b")
        assert store.take_lease(sess, stack_id, "a", now, later)


def test_a_restarted_server_takes_its_dead_predecessors_lease_at_once(
        ctx: ServerContext, fake: FakeInstances) -> None:  # noqa: F811
    """A lease of a server process of this machine that is gone (this server killed and
    started again) is taken without waiting LEASE; one of a live process or of another
    machine is not."""
    stacks.deploy(ctx, project(ctx), spec_of("services:\n  web:\n    image: img:1\n"))
    with ctx.db.read() as sess:
        stack_id = store.get(sess, project(ctx), "shop").id
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid of this machine that no longer runs
    here = socket.gethostname()
    now = datetime.now(UTC)
    for owner, taken in ((f"{here}:{gone.pid}", True), (f"{here}:{os.getppid()}", False),
                         (f"elsewhere:{gone.pid}", False)):
        with ctx.db.session() as sess:
            store.release_lease(sess, stack_id, stacks.OWNER)
            assert store.take_lease(sess, stack_id, owner, now, now + timedelta(seconds=60))
        assert stacks.gone_owner(owner) is taken
        if taken:
            stacks.renew(ctx, stack_id, "shop")
        else:
            with pytest.raises(Conflict, match="another server"):
                stacks.renew(ctx, stack_id, "shop")
        with ctx.db.read() as sess:
            assert store.lease_owner(sess, stack_id) == (stacks.OWNER if taken else owner)
        with ctx.db.session() as sess:
            store.release_lease(sess, stack_id, owner)
    assert not stacks.gone_owner(None) and not stacks.gone_owner(f"{here}:notapid")


def _state(status: str = "converged", replicas: int = 1) -> StackState:
    now = datetime.now(UTC)
    return StackState("s1", "shop", 1, {}, {"web": ServiceState("web", replicas, 2, "h2")},
                      now, now, status)


def _rep(state: str | None = "running", health: str = "healthy", digest: str | None = "h2",
         service: str = "web", name: str | None = "shop-web-1") -> ReplicaState:
    return ReplicaState(service, 1, 2, "i1", name, state, "host", "10.0.0.2", health, digest)


@pytest.mark.parametrize(("state", "replicas", "want"), [
    (_state(), [_rep()], False),
    (_state("converging"), [_rep()], True),
    (_state("updating"), [_rep()], True),
    (_state("paused"), [_rep(health="unhealthy")], False),  # an operator's move
    (_state(replicas=2), [_rep()], True),  # one missing
    (_state(), [], True),
    (_state(), [_rep(name=None, state=None)], True),  # its instance deleted by hand
    (_state(), [_rep(state="error")], True),
    (_state(), [_rep(health="unhealthy")], True),
    (_state(), [_rep(health="starting")], False),  # dockerd still decides
    (_state(), [_rep(digest="h1")], True),  # an old template
    (_state(), [_rep(digest=None)], False),  # a replica made before templates were kept
    (_state(), [_rep(), _rep(service="gone")], True),  # a removed service's replica
])
def test_needs_work(state: StackState, replicas: list[ReplicaState], want: bool) -> None:
    assert stacks_loop.needs_work(state, replicas) is want


CHECKED = """
services:
  web:
    image: img:{version}
    healthcheck: {{test: [CMD, "true"], interval: 1s, retries: 1}}
    deploy:
      replicas: 2
      update_config: {{failure_action: rollback, monitor: 0s}}
"""


def _set_health(context: ServerContext, image: str, health: str) -> None:
    """What the agents would report: the instances of `image` are `health`."""
    with context.db.session() as sess:
        for row in sess.scalars(select(InstanceRow).where(InstanceRow.image == image)):
            row.health = health


def _images(context: ServerContext) -> list[str]:
    with context.db.read() as sess:
        return sorted(sess.scalars(select(InstanceRow.image).where(
            InstanceRow.desired_state != "deleted")))


def test_update_rolls_out_and_a_failing_one_is_rolled_back(
        ctx: ServerContext, fake: FakeInstances,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """img:1 and img:2 turn healthy as soon as they run (the fake's create is its agent's
    report); img:3 never does: after its monitor window the update rolls back to img:2."""
    pid = project(ctx)
    monkeypatch.setattr("dockyard.server.stacks_reconciler.POLL", 0.01)
    stacks.deploy(ctx, pid, spec_of(CHECKED.format(version=1)))
    _set_health(ctx, "img:1", "healthy")
    fake.on_create = lambda spec: "starting" if spec.image == "img:3" else "healthy"
    two = stacks.deploy(ctx, pid, spec_of(CHECKED.format(version=2)))
    assert two.status == "converged" and two.version == 2
    assert _images(ctx) == ["img:2", "img:2"]
    assert [a for a in two.actions if a.startswith("created")] == [
        "created shop-web-1", "created shop-web-2"]  # one batch at a time, in place

    three = stacks.deploy(ctx, pid, spec_of(CHECKED.format(version=3)))
    assert three.status == "converged", three.status_reason
    assert three.version == 4 and _images(ctx) == ["img:2", "img:2"]
    assert "created shop-web-1" in three.actions  # v3's first batch ran, then went back
    history = stacks.history(ctx, pid, "shop")
    assert [(v.version, v.note.split(":")[0], v.services["web"]) for v in history] == [
        (1, "deploy", "img:1"), (2, "deploy", "img:2"), (3, "failed", "img:3"),
        (4, "rollback to 2", "img:2")]
    assert history[-1].current

    back = stacks.rollback(ctx, pid, "shop")  # the newest earlier version that did not fail
    assert back.version == 5 and _images(ctx) == ["img:1", "img:1"]
    assert stacks.history(ctx, pid, "shop")[-1].note == "rollback to 1"


def test_a_failing_rollout_pauses_with_failure_action_pause(
        ctx: ServerContext, fake: FakeInstances,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    pid = project(ctx)
    monkeypatch.setattr("dockyard.server.stacks_reconciler.POLL", 0.01)
    text = CHECKED.replace("failure_action: rollback", "failure_action: pause")
    stacks.deploy(ctx, pid, spec_of(text.format(version=1)))
    _set_health(ctx, "img:1", "healthy")
    fake.on_create = lambda spec: "unhealthy"
    paused = stacks.deploy(ctx, pid, spec_of(text.format(version=2)))
    assert paused.status == "paused" and "1 of 2 new replicas failed" in (
        paused.status_reason or "")
    assert _images(ctx) == ["img:1", "img:2"]  # one batch, then it stopped


def test_the_loop_finishes_an_update_a_dead_server_left(
        ctx: ServerContext, fake: FakeInstances,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 2 was stored `updating` and the server died before any replica changed: the
    loop of a fresh process (nothing in memory) rolls it out from the store alone; a stack
    another server holds the lease of is left alone."""
    pid = project(ctx)
    monkeypatch.setattr("dockyard.server.stacks_reconciler.POLL", 0.01)
    monkeypatch.setattr(stacks_loop, "SLICE", 0.05)
    fake.on_create = lambda spec: "healthy"
    stacks.deploy(ctx, pid, spec_of(CHECKED.format(version=1)))
    v2 = stacks.checked(spec_of(CHECKED.format(version=2)))
    with ctx.db.session() as sess:
        before = store.get(sess, pid, "shop")
        state = store.save_version(sess, pid, "shop", v2.model_dump(mode="json"),
                                   stacks._services(v2, before), "updating")
        now = datetime.now(UTC)
        assert store.take_lease(sess, state.id, "other-server", now,
                                now + timedelta(seconds=60))
    assert stacks_loop.converge_once(ctx) == []  # held by another server
    assert _images(ctx) == ["img:1", "img:1"]
    with ctx.db.session() as sess:
        store.release_lease(sess, state.id, "other-server")
    for _ in range(200):
        stacks_loop.converge_once(ctx)
        with ctx.db.read() as sess:
            if store.get(sess, pid, "shop").status == "converged":
                break
    assert _images(ctx) == ["img:2", "img:2"]
    with ctx.db.read() as sess:
        assert store.get(sess, pid, "shop").status == "converged"


def test_the_delay_between_batches_is_kept_in_the_store(
        ctx: ServerContext, fake: FakeInstances,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`delay: 60s`: after the first batch the loop waits; the start of that batch is the
    service row's (no process memory), so moving it back 61 s in the store — what a server
    restarted a minute later finds — lets the next round run the second batch."""
    pid = project(ctx)
    monkeypatch.setattr("dockyard.server.stacks_reconciler.POLL", 0.01)
    monkeypatch.setattr(stacks_loop, "SLICE", 0.05)
    fake.on_create = lambda spec: "healthy"
    slow = CHECKED.replace("monitor: 0s", "monitor: 0s, parallelism: 1, delay: 60s")
    stacks.deploy(ctx, pid, spec_of(slow.format(version=1)))
    v2 = stacks.checked(spec_of(slow.format(version=2)))
    with ctx.db.session() as sess:
        before = store.get(sess, pid, "shop")
        state = store.save_version(sess, pid, "shop", v2.model_dump(mode="json"),
                                   stacks._services(v2, before), "updating")
    for _ in range(3):
        stacks_loop.converge_once(ctx)
    assert _images(ctx) == ["img:1", "img:2"]  # one batch, then the delay
    with ctx.db.session() as sess:
        started = store.last_batch(sess, state.id, "web")
        assert started is not None
        store.mark_batch(sess, state.id, "web", started - timedelta(seconds=61))
    for _ in range(3):
        stacks_loop.converge_once(ctx)
    assert _images(ctx) == ["img:2", "img:2"]


def test_service_healthy_dependency_orders_the_first_start(
        ctx: ServerContext, fake: FakeInstances,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    pid = project(ctx)
    monkeypatch.setattr(stacks_loop, "SLICE", 0.0)
    fake.on_create = lambda spec: "starting" if spec.image == "db:1" else "none"
    text = """
services:
  db:
    image: db:1
    healthcheck: {test: [CMD, "true"], interval: 1s}
  web:
    image: web:1
    depends_on: {db: {condition: service_healthy}}
"""
    first = stacks.deploy(ctx, pid, spec_of(text))
    assert first.actions == ["created shop-db-1"] and first.status == "converging"
    stacks_loop.converge_once(ctx)
    assert _images(ctx) == ["db:1"]  # db still starting: web waits
    _set_health(ctx, "db:1", "healthy")
    stacks_loop.converge_once(ctx)
    assert _images(ctx) == ["db:1", "web:1"]


def test_the_lease_on_postgresql_two_servers_racing() -> None:
    """Eight threads (servers) claim one stack's lease at once on PostgreSQL: exactly one
    gets it (the conditional UPDATE under PostgreSQL's row lock), the rest see it taken."""
    with fresh_database("stacklease") as url:
        database = Database(url)
        try:
            pid = init_store(database)
            with database.session() as sess:
                state = store.save_version(sess, pid, "shop", {}, {})
            now = datetime.now(UTC)
            start = threading.Barrier(8)

            def claim(owner: str) -> bool:
                start.wait()
                with database.session() as sess:
                    return store.take_lease(sess, state.id, owner, now,
                                            now + timedelta(seconds=30))

            with ThreadPoolExecutor(8) as pool:
                won = list(pool.map(claim, [f"server-{i}" for i in range(8)]))
            assert won.count(True) == 1
        finally:
            database.close()
