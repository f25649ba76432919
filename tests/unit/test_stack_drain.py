"""A replica of a published service leaves the HTTP entrance before it is stopped (the drain
of server/stacks_reconciler.py and server/entrance.py), on a real SQLite store with the
instance service faked at its seam (tests/unit/test_stack_reconciler.py's FakeInstances) and
an "entrance agent" that acknowledges routes the way `GET /v1/agent/entrance?known=` does.
What is checked: the delete comes only after every entrance runs routes without the replica;
a service that is not published, or a cluster without an entrance, stops at once; an
entrance that does not confirm delays the stop by the bounded wait and is named in an event;
a draining replica the plan keeps is put back into the routes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from dockyard.server import entrance, stacks, stacks_loop
from dockyard.server.context import ServerContext
from dockyard.store import entrance as entrance_store
from dockyard.store import stacks as store
from dockyard.store.stack_tables import StackReplicaRow
from dockyard.store.tables import EventRow, InstanceRow
from tests.unit.test_stack_reconciler import (  # noqa: F401  (fixtures)
    FakeInstances,
    ctx,
    fake,
    project,
    spec_of,
)

PUBLISHED = """
services:
  web:
    image: img:1
    deploy: {replicas: 3}
    x-dockyard: {http: {host: shop.example, port: 8080}}
"""


def backends(context: ServerContext) -> set[str]:
    return {b.name for route in entrance.current(context).routes for b in route.backends}


class EntranceAgent:
    """Acknowledges the current routes every `lag` seconds, like an agent that applied them."""

    def __init__(self, context: ServerContext, host: str = "edge1", lag: float = 0.05) -> None:
        self.ctx, self.host, self.lag = context, host, lag
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stopping.wait(self.lag):
            entrance.ack(self.ctx, self.host, entrance.current(self.ctx).digest)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entrance, "DRAIN_GRACE", 0.0)
    monkeypatch.setattr(entrance, "DRAIN_TIMEOUT", 0.5)


@pytest.fixture
def agent(ctx: ServerContext) -> Iterator[EntranceAgent]:  # noqa: F811
    running = EntranceAgent(ctx)
    entrance.ack(ctx, running.host, "")  # heard from, not yet in step
    running.thread.start()
    yield running
    running.stopping.set()
    running.thread.join(timeout=5)


def spy_deletes(ctx: ServerContext, fake: FakeInstances,  # noqa: F811
                monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, set[str], bool]]:
    """Each delete as (name, the routes' backends then, whether every entrance ran them)."""
    seen: list[tuple[str, set[str], bool]] = []
    delete = fake.delete

    def spying(ctx_: ServerContext, project_: str, ref: str, force: bool) -> str:
        with ctx.db.read() as sess:
            acks = entrance_store.acks(sess, datetime(2000, 1, 1, tzinfo=UTC))
            row = sess.get(InstanceRow, ref)
            assert row is not None
            name = row.name
        want = entrance.current(ctx).digest
        seen.append((name, backends(ctx), all(d == want for d in acks.values())))
        return delete(ctx_, project_, ref, force)

    monkeypatch.setattr(fake, "delete", spying)
    return seen


def test_scale_down_stops_only_what_every_entrance_no_longer_routes(
        ctx: ServerContext, fake: FakeInstances, quick: None,  # noqa: F811
        agent: EntranceAgent, monkeypatch: pytest.MonkeyPatch) -> None:
    stacks.deploy(ctx, project(ctx), spec_of(PUBLISHED))
    assert backends(ctx) == {"shop-web-1", "shop-web-2", "shop-web-3"}
    deletes = spy_deletes(ctx, fake, monkeypatch)
    result = stacks.scale(ctx, project(ctx), "shop", {"web": 1})
    assert [name for name, _, _ in deletes] == ["shop-web-3", "shop-web-2"]
    for name, routed, confirmed in deletes:
        assert name not in routed and confirmed, (name, routed, confirmed)
    assert any(a.startswith("drained shop-web-3, shop-web-2") for a in result.actions)
    assert backends(ctx) == {"shop-web-1"}


def test_no_entrance_or_no_http_means_no_wait(ctx: ServerContext, fake: FakeInstances,  # noqa: F811
                                              quick: None) -> None:
    stacks.deploy(ctx, project(ctx), spec_of(PUBLISHED))
    began = time.monotonic()
    result = stacks.scale(ctx, project(ctx), "shop", {"web": 1})  # nobody ever acked
    assert time.monotonic() - began < entrance.DRAIN_TIMEOUT
    assert not any(a.startswith("drained") for a in result.actions)
    assert result.actions == ["deleted shop-web-3", "deleted shop-web-2"]


def test_an_entrance_that_does_not_confirm_is_waited_for_then_named(
        ctx: ServerContext, fake: FakeInstances, quick: None) -> None:  # noqa: F811
    stacks.deploy(ctx, project(ctx), spec_of(PUBLISHED))
    entrance.ack(ctx, "edge9", "stale")  # alive, never catches up
    began = time.monotonic()
    stacks.scale(ctx, project(ctx), "shop", {"web": 2})
    assert time.monotonic() - began >= entrance.DRAIN_TIMEOUT
    with ctx.db.read() as sess:
        messages = list(sess.scalars(select(EventRow.message)))
    assert any("entrance on edge9 did not confirm the drain" in m for m in messages), messages


def test_a_draining_replica_the_plan_keeps_is_routed_again(
        ctx: ServerContext, fake: FakeInstances, quick: None) -> None:  # noqa: F811
    pid = project(ctx)
    stacks.deploy(ctx, pid, spec_of(PUBLISHED))
    with ctx.db.session() as sess:  # a run died between the drain and the stop
        state = store.get(sess, pid, "shop")
        store.mark_draining(sess, state.id, "web", [2], datetime.now(UTC))
    assert backends(ctx) == {"shop-web-1", "shop-web-3"}
    with ctx.db.read() as sess:
        assert stacks_loop.needs_work(state, store.replicas(sess, state.id))
    stacks_loop.converge_once(ctx)
    assert backends(ctx) == {"shop-web-1", "shop-web-2", "shop-web-3"}
    with ctx.db.read() as sess:
        assert not any(r.draining_since for r in sess.scalars(select(StackReplicaRow)))
