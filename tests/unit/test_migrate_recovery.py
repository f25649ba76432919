"""Recovery of migrations at server start (server/migrate.recover, live_migrate.recover) on a
real SQLite store: one operation whose recovery fails is marked (operation `failure` with
the error, instance `error` out of `migrating`, an event `migrate_stuck`) and the others are
still recovered. The agents are unreachable (an empty API URL): their clean-up is best effort.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from dockyard.config import ServerSettings
from dockyard.server import live_migrate
from dockyard.server import migrate as cold
from dockyard.server.agent_proxy import AgentProxy
from dockyard.server.bootstrap import init_store
from dockyard.server.context import ServerContext
from dockyard.server.notifier import Notifier
from dockyard.server.registry import client as registry_client
from dockyard.store.db import Database
from dockyard.store.operations import start as start_operation
from dockyard.store.tables import (
    CoreAllocationRow,
    EventRow,
    HostRow,
    InstanceRow,
    NetworkRow,
    OperationRow,
)

SWITCHED = ["prepared", "volumes_copied", "stopped", "committed", "delta_copied", "switched"]


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServerContext]:
    settings = ServerSettings(home=tmp_path)
    db = Database(settings.db_url())
    project = init_store(db)
    with db.session() as sess:
        for name in ("src", "dst"):
            sess.add(HostRow(id=name, name=name, inventory={"cores": [0, 1, 2, 3]}))
        sess.add(NetworkRow(id="n1", name="n1", project_id=project, subnet="10.0.0.0/24",
                            gateway="10.0.0.1", bridge="dybn1"))
    yield ServerContext(settings=settings, db=db, notifier=Notifier(None),
                        agents=AgentProxy(ca=None), registry=registry_client(settings))
    db.close()


def _moving(ctx: ServerContext, name: str, kind: str, steps: list[str], *, state: str,
            core: int) -> tuple[str, str]:
    """An instance switched to `dst` at generation 2 (cores [core] there, cpuset `core` on
    the source), with its operation `kind` running and journalled up to `steps`."""
    with ctx.db.session() as sess:
        project = sess.scalar(select(NetworkRow.project_id))
        assert project is not None
        row = InstanceRow(id=f"i-{name}", name=name, project_id=project, host_id="dst",
                          network_id="n1", image="img", hostname=name, ip=f"10.0.0.{core + 10}",
                          mac="02:00:00:00:00:01", state=state, desired_state="running",
                          generation=2, limits={"cores": 1, "cpuset": str(core)})
        sess.add(row)
        sess.add(CoreAllocationRow(host_id="dst", core=core, instance_id=row.id))
        op = start_operation(sess, row, kind, state="running", source="src", target="dst",
                             source_id="src", target_id="dst", cores=[core], generation=1)
        op.steps = [*op.steps, *({"step": s} for s in steps)]
        row.options = {"migrating": op.id}
        sess.flush()
        return op.id, row.id


def _take_source_core(ctx: ServerContext, core: int) -> None:
    """Another instance holds the source core the moved one had: switching back conflicts."""
    with ctx.db.session() as sess:
        sess.add(CoreAllocationRow(host_id="src", core=core, instance_id="i-newcomer"))


def _op(ctx: ServerContext, op_id: str) -> OperationRow:
    with ctx.db.session() as sess:
        op = sess.get(OperationRow, op_id)
        assert op is not None
        sess.expunge(op)
        return op


def _instance(ctx: ServerContext, instance_id: str) -> InstanceRow:
    with ctx.db.session() as sess:
        row = sess.get(InstanceRow, instance_id)
        assert row is not None
        sess.expunge(row)
        return row


def _events(ctx: ServerContext, instance_id: str) -> list[str]:
    with ctx.db.session() as sess:
        return list(sess.scalars(select(EventRow.kind).where(
            EventRow.instance_id == instance_id).order_by(EventRow.id)))


def _assert_stuck(ctx: ServerContext, op_id: str, instance_id: str) -> None:
    op = _op(ctx, op_id)
    assert op.status == "failure"
    assert op.error is not None and "recovery after a server restart failed" in op.error
    assert "cores [1] were taken" in op.error
    assert op.steps[-1]["step"] == "stuck"
    row = _instance(ctx, instance_id)
    assert "migrating" not in row.options
    assert row.state == "error" and row.message == op.error
    assert _events(ctx, instance_id)[-1] == "migrate_stuck"


def test_a_failed_cold_recovery_is_marked_and_the_next_one_still_runs(
        ctx: ServerContext) -> None:
    stuck_op, stuck = _moving(ctx, "a", "migrate", SWITCHED, state="starting", core=1)
    _take_source_core(ctx, 1)
    done_op, done = _moving(ctx, "b", "migrate", [*SWITCHED, "running"], state="running",
                            core=2)
    cold.recover(ctx)
    _assert_stuck(ctx, stuck_op, stuck)
    assert _op(ctx, done_op).status == "success"
    assert "migrating" not in _instance(ctx, done).options
    assert _events(ctx, done)[-1] == "migrated"


def test_a_failed_live_recovery_is_marked_and_the_next_one_still_runs(
        ctx: ServerContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_migrate, "RECOVERY_WAIT", 0.2)  # the target never reports
    stuck_op, stuck = _moving(ctx, "a", "live_migrate", ["prepared", "restored", "switched"],
                              state="starting", core=1)
    _take_source_core(ctx, 1)
    done_op, done = _moving(ctx, "b", "live_migrate", ["prepared", "restored", "switched"],
                            state="running", core=2)
    live_migrate.recover(ctx)
    _assert_stuck(ctx, stuck_op, stuck)
    assert _op(ctx, done_op).status == "success"
    assert _instance(ctx, done).host_id == "dst"
    assert _events(ctx, done)[-1] == "migrated"


@pytest.mark.parametrize("steps", [["prepared"], ["prepared", "volumes_copied"]])
def test_a_rollback_before_the_stop_leaves_the_instance_running(
        ctx: ServerContext, steps: list[str]) -> None:
    """Killed before the source was stopped, the instance never stopped: the rollback asks
    for it running again (a new revision, its agent re-syncs) without calling it `starting`
    (an exec right after the recovery was refused: "is starting, not running")."""
    with ctx.db.session() as sess:
        project = sess.scalar(select(NetworkRow.project_id))
        assert project is not None
        row = InstanceRow(id="i-run", name="run", project_id=project, host_id="src",
                          network_id="n1", image="img", hostname="run", ip="10.0.0.20",
                          mac="02:00:00:00:00:02", state="running", desired_state="running",
                          generation=1, limits={})
        sess.add(row)
        op = start_operation(sess, row, "migrate", state="running", source="src", target="dst",
                             source_id="src", target_id="dst", cores=[], generation=1)
        op.steps = [*op.steps, *({"step": s} for s in steps)]
        row.options = {"migrating": op.id}
        sess.flush()
        op_id, revision_before = op.id, row.revision
    cold.recover(ctx)
    row = _instance(ctx, "i-run")
    assert (row.state, row.desired_state, row.host_id, row.generation) == \
        ("running", "running", "src", 1)
    assert row.revision > revision_before and "migrating" not in row.options
    assert _op(ctx, op_id).status == "failure"
    assert _events(ctx, "i-run")[-1] == "migrate_failed"
