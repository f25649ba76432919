"""The one placement step (`server/placement.py`) on a real SQLite store: launch and resize
apply the same memory rule, overcommit ratio included; a race lost to a concurrent writer
(`RetryableConflict`) is run again from a fresh read, any other conflict is not, whatever its
message says."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from dockyard.config import ServerSettings
from dockyard.errors import Conflict, NoCapacity, NotFound, NoValidHost, RetryableConflict
from dockyard.model.instance import InstanceCreate, Limits, LimitsPatch
from dockyard.server import instances, migrate, placement, resize
from dockyard.server.agent_proxy import AgentProxy
from dockyard.server.bootstrap import init_store
from dockyard.server.context import ServerContext
from dockyard.server.notifier import Notifier
from dockyard.server.registry import client as registry_client
from dockyard.store import ledger, quotas
from dockyard.store.db import Database
from dockyard.store.tables import CoreAllocationRow, HostRow, InstanceRow, NetworkRow

MiB = 1 << 20
HOST_MEMORY = 1024 * MiB
OVERCOMMIT = 2.0  # the host takes 2 GiB of memory limits
NEIGHBOUR = 256 * MiB  # held by another instance on the host


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServerContext]:
    settings = ServerSettings(home=tmp_path, memory_overcommit=OVERCOMMIT)
    db = Database(settings.db_url())
    project = init_store(db)
    with db.session() as sess:
        sess.add(HostRow(id="h1", name="host1", version=0, draining=False,
                         inventory={"cores": [0, 1, 2, 3], "memory_bytes": HOST_MEMORY},
                         reserved_cores=[], labels={}, last_heartbeat=datetime.now(UTC)))
        sess.add(NetworkRow(id="n1", name="n1", project_id=project, subnet="10.0.0.0/24",
                            gateway="10.0.0.1", dns=[], bridge="dybn1"))
        sess.flush()  # the instances refer to both
        for name, ip, memory in (("neighbour", "10.0.0.5", NEIGHBOUR), ("box", "10.0.0.6", None)):
            sess.add(InstanceRow(id=f"i-{name}", name=name, project_id=project, host_id="h1",
                                 network_id="n1", image="busybox", hostname=name, ip=ip,
                                 mac="02:00:00:00:00:01", state="running",
                                 desired_state="running", generation=1,
                                 limits=Limits(memory_bytes=memory).model_dump(), options={}))
    yield ServerContext(settings=settings, db=db, notifier=Notifier(None),
                        agents=AgentProxy(ca=None), registry=registry_client(settings))
    db.close()


def _project(ctx: ServerContext) -> str:
    with ctx.db.read() as sess:
        project = sess.scalar(select(NetworkRow.project_id))
    assert project is not None
    return project


def _launch_fits(ctx: ServerContext, memory: int) -> bool:
    spec = InstanceCreate(name="newcomer", image="busybox", network="n1",
                          limits={"memory": memory})
    return instances.explain_placement(ctx, _project(ctx), spec).chosen == "host1"


def _resize_fits(ctx: ServerContext, memory: int) -> bool:
    """`box` (no memory limit: it reserves nothing) resized to `memory`: the host then holds
    what it would hold with a newcomer of `memory` beside `box`."""
    try:
        resize.resize(ctx, _project(ctx), "box", LimitsPatch(memory=memory))
    except NoCapacity as exc:
        assert "does not fit on host host1" in exc.message
        return False
    return True


@pytest.mark.parametrize("memory", [512 * MiB, 1024 * MiB, 1536 * MiB,
                                    2048 * MiB - NEIGHBOUR, 2048 * MiB - NEIGHBOUR + 1,
                                    3072 * MiB])
def test_launch_and_resize_agree_under_memory_overcommit(ctx: ServerContext,
                                                         memory: int) -> None:
    expected = NEIGHBOUR + memory <= HOST_MEMORY * OVERCOMMIT
    assert _launch_fits(ctx, memory) == expected
    assert _resize_fits(ctx, memory) == expected


def test_a_refused_resize_changes_nothing(ctx: ServerContext) -> None:
    with ctx.db.read() as sess:
        before = sess.scalar(select(HostRow.version).where(HostRow.id == "h1"))
    assert not _resize_fits(ctx, 4096 * MiB)
    with ctx.db.read() as sess:
        row = sess.get(InstanceRow, "i-box")
        assert row is not None and row.limits["memory_bytes"] is None
        assert sess.scalar(select(HostRow.version).where(HostRow.id == "h1")) == before


def test_resize_keeps_its_cores_unless_their_number_changes(ctx: ServerContext) -> None:
    project = _project(ctx)
    resize.resize(ctx, project, "box", LimitsPatch(cores=1))
    with ctx.db.read() as sess:
        row = sess.get(InstanceRow, "i-box")
        assert row is not None
        cpuset = row.limits["cpuset"]
    resize.resize(ctx, project, "box", LimitsPatch(memory=64 * MiB))
    with ctx.db.read() as sess:
        row = sess.get(InstanceRow, "i-box")
        assert row is not None and row.limits["cpuset"] == cpuset
        held = list(sess.scalars(select(CoreAllocationRow.core)
                                 .where(CoreAllocationRow.instance_id == "i-box")))
        assert [str(c) for c in held] == [cpuset]


def test_placement_ledger_and_quotas_count_one_reservation(ctx: ServerContext) -> None:
    resize.resize(ctx, _project(ctx), "box", LimitsPatch(cores=1, memory=96 * MiB, pids=300))
    with ctx.db.read() as sess:
        view, _ = placement.cluster_view(sess, ctx.settings)
        host = view.hosts[0]
        usage = quotas.usage(sess, _project(ctx))
        memory = ledger.memory_reserved(sess, "h1")
    assert host.memory_reserved_bytes == memory == usage.memory_bytes == NEIGHBOUR + 96 * MiB
    assert host.pids_reserved == 4096 + 300 and usage.cores == 1 and host.taken_cores == [3]


# -- retry decided by the error's type ------------------------------------------------------


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "PLACEMENT_BACKOFF", 0.0)


def test_a_placement_from_a_stale_view_is_run_again(ctx: ServerContext,
                                                    no_backoff: None) -> None:
    """Another writer moved the host's version behind the cached view's back (raw SQL: no
    capacity stamp): the first attempt loses the CAS, the second reads afresh and wins."""
    with ctx.db.read() as sess:
        placement.cluster_view(sess, ctx.settings)  # cached at version 0
    with ctx.db.session() as sess:
        sess.connection().execute(text("UPDATE hosts SET version = 7 WHERE id = 'h1'"))
    attempts: list[type[Exception] | None] = []

    def work(sess: object) -> str:
        try:
            plan = placement.reserve(sess, ctx.settings, placement.request_for(  # type: ignore[arg-type]
                Limits(cores=1, memory_bytes=64 * MiB), "n1", {}), "i-new")
        except Exception as exc:
            attempts.append(type(exc))
            raise
        attempts.append(None)
        return plan.host_id

    assert placement.placing(ctx.db, work) == "h1"
    assert attempts == [RetryableConflict, None]
    with ctx.db.read() as sess:
        assert sess.scalar(select(HostRow.version).where(HostRow.id == "h1")) == 8
        assert len(list(sess.scalars(select(CoreAllocationRow.core)
                                     .where(CoreAllocationRow.instance_id == "i-new")))) == 1


def test_only_a_retryable_conflict_is_run_again(ctx: ServerContext, no_backoff: None) -> None:
    calls = []

    def refused(sess: object) -> None:
        calls.append(1)
        raise Conflict("cores were taken concurrently; retry")  # the words, not the type

    with pytest.raises(Conflict):
        placement.placing(ctx.db, refused)
    assert len(calls) == 1


def test_a_race_lost_every_time_ends_in_the_conflict(ctx: ServerContext,
                                                     no_backoff: None) -> None:
    calls = []

    def lost(sess: object) -> None:
        calls.append(1)
        raise RetryableConflict("host capacity changed during placement; retry")

    with pytest.raises(RetryableConflict) as caught:
        placement.placing(ctx.db, lost)
    assert caught.value.status == 409
    assert len(calls) == placement.PLACEMENT_ATTEMPTS


# -- a move: the best host but the instance's own ---------------------------------------------


def _second_host(ctx: ServerContext, memory: int) -> None:
    with ctx.db.session() as sess:
        sess.add(HostRow(id="h2", name="host2", version=0, draining=False,
                         inventory={"cores": [0, 1], "memory_bytes": memory},
                         reserved_cores=[], labels={}, last_heartbeat=datetime.now(UTC)))


def _choose(ctx: ServerContext, to: str | None, instance: str = "i-neighbour",
            ) -> tuple[str, list[int]]:
    def work(sess: Session) -> tuple[str, list[int]]:
        row = sess.get(InstanceRow, instance)
        assert row is not None
        host, cores = migrate.choose_target(ctx, sess, row, to)
        return host.name, cores
    return placement.placing(ctx.db, work)


def test_a_move_goes_to_the_best_other_host_and_holds_its_cores(ctx: ServerContext) -> None:
    _second_host(ctx, HOST_MEMORY)
    with ctx.db.session() as sess:
        row = sess.get(InstanceRow, "i-neighbour")
        assert row is not None
        row.limits = Limits(cores=1, cpuset="3", memory_bytes=NEIGHBOUR).model_dump()
    assert _choose(ctx, None) == ("host2", [1])
    with ctx.db.read() as sess:
        held = set(sess.execute(select(CoreAllocationRow.host_id, CoreAllocationRow.core)
                                .where(CoreAllocationRow.instance_id == "i-neighbour")))
    assert held == {("h2", 1)}


def test_a_move_names_why_no_other_host_fits(ctx: ServerContext) -> None:
    _second_host(ctx, NEIGHBOUR // 4)  # holds a quarter of the instance × 2.0
    with pytest.raises(NoValidHost, match="no other host fits: host2: not enough memory"):
        _choose(ctx, None)
    with pytest.raises(Conflict, match="already runs on host1"):
        _choose(ctx, "host1")
    with pytest.raises(NotFound, match="nowhere"):
        _choose(ctx, "nowhere")
