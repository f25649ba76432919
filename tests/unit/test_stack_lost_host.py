"""A replica whose host is lost (silent for LOST_AFTER heartbeat timeouts) is moved off it the
way `evacuate` moves instances (same name and IP, new generation), on a real SQLite store with
the instance service and the evacuation's move faked at their seams. Checked: only replicas
of lost hosts move, a host silent for less is left alone, the stacks loop notices a lost host
of a converged stack, and a move that finds no room is retried later and said in an event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from dockyard.errors import Conflict
from dockyard.server import stacks, stacks_loop, stacks_reconciler
from dockyard.server.context import ServerContext
from dockyard.store import stacks as store
from dockyard.store.tables import EventRow, HostRow, InstanceRow
from tests.unit.test_stack_reconciler import (  # noqa: F401  (fixtures)
    FakeInstances,
    ctx,
    fake,
    project,
    spec_of,
)

WEB = "services:\n  web:\n    image: img:1\n    deploy: {replicas: 2}\n"


class FakeMoves:
    """evacuate.move: re-points the row to `target` (or refuses with `refuse`)."""

    def __init__(self, context: ServerContext, target: str) -> None:
        self.ctx, self.target = context, target
        self.moved: list[tuple[str, str]] = []
        self.refuse = ""

    def move(self, context: ServerContext, instance_id: str, from_host: str) -> tuple[str, str]:
        if self.refuse:
            raise Conflict(self.refuse)
        with context.db.session() as sess:
            row = sess.get(InstanceRow, instance_id)
            assert row is not None
            row.host_id = sess.scalar(select(HostRow.id).where(HostRow.name == self.target))
            row.generation += 1
            self.moved.append((row.name, from_host))
            return row.name, self.target


def _hosts(context: ServerContext, silent_for: float) -> None:
    """host `far` silent for `silent_for` s holds shop-web-1; `near` beat just now."""
    now = datetime.now(UTC)
    with context.db.session() as sess:
        for name, beat in (("far", now - timedelta(seconds=silent_for)), ("near", now)):
            sess.add(HostRow(id=name, name=name, version=0, draining=False, reserved_cores=[],
                             labels={}, inventory={}, last_heartbeat=beat))
        sess.flush()
        for row in sess.scalars(select(InstanceRow)):
            row.host_id = "far" if row.name == "shop-web-1" else "near"


@pytest.fixture
def moves(ctx: ServerContext, monkeypatch: pytest.MonkeyPatch) -> FakeMoves:  # noqa: F811
    fake_moves = FakeMoves(ctx, "near")
    monkeypatch.setattr(stacks_reconciler.evacuate, "move", fake_moves.move)
    return fake_moves


def test_a_replica_of_a_lost_host_moves_and_the_loop_notices(
        ctx: ServerContext, fake: FakeInstances, moves: FakeMoves) -> None:  # noqa: F811
    pid = project(ctx)
    stacks.deploy(ctx, pid, spec_of(WEB))
    timeout = ctx.settings.heartbeat_timeout
    _hosts(ctx, silent_for=stacks_reconciler.LOST_AFTER * timeout + 5)
    with ctx.db.read() as sess:
        state = store.get(sess, pid, "shop")
        assert state.status == "converged"
        lost = stacks_reconciler.lost_hosts(sess, timeout)
        assert lost == {"far"}
        assert stacks_loop.needs_work(state, store.replicas(sess, state.id), lost)
    assert stacks_loop.converge_once(ctx) == ["shop"]
    assert moves.moved == [("shop-web-1", "far")]
    with ctx.db.read() as sess:
        assert {r.host for r in store.replicas(sess, state.id)} == {"near"}
        messages = list(sess.scalars(select(EventRow.message)))
    assert "stack shop: web: moved shop-web-1 off lost host far to near" in messages
    assert stacks_loop.converge_once(ctx) == []  # nothing left to do


def test_a_host_silent_for_less_keeps_its_replicas(
        ctx: ServerContext, fake: FakeInstances, moves: FakeMoves) -> None:  # noqa: F811
    stacks.deploy(ctx, project(ctx), spec_of(WEB))
    _hosts(ctx, silent_for=ctx.settings.heartbeat_timeout + 5)  # down, not yet lost
    stacks_loop.converge_once(ctx)
    assert moves.moved == []


def test_no_room_elsewhere_is_said_and_tried_again(
        ctx: ServerContext, fake: FakeInstances, moves: FakeMoves) -> None:  # noqa: F811
    stacks.deploy(ctx, project(ctx), spec_of(WEB))
    _hosts(ctx, silent_for=stacks_reconciler.LOST_AFTER * ctx.settings.heartbeat_timeout + 5)
    moves.refuse = "no host has room for shop-web-1"
    stacks_loop.converge_once(ctx)
    with ctx.db.read() as sess:
        messages = list(sess.scalars(select(EventRow.message)))
    assert any("shop-web-1 stays on lost host far: no host has room" in m for m in messages)
    moves.refuse = ""
    stacks_loop.converge_once(ctx)
    assert moves.moved == [("shop-web-1", "far")]
