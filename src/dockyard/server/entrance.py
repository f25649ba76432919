"""The HTTP entrance, server side: the routes it answers the entrance agents with, what each
entrance reports it runs, and the drain wait of the stacks reconciler.

    GET /v1/agent/entrance?known=D (routers/entrance.py) ─▶ ack(host, D): the entrance of
        that host runs D (its agent asks for the next change right after applying one);
        the answer: the routes, and `legs` ─▶ the host's own address on each network the
        routes reach (allocated in the ledger once, released with the network or the host)
    StackReconciler, before it stops replicas that take traffic: mark them draining (they
        leave the routes), then `wait_applied` ─▶ every entrance heard from lately runs the
        current routes (or `timeout`: the hosts that did not confirm are named) ─▶ DRAIN_GRACE
        for the requests the old HAProxy worker still holds on them ─▶ stop

The acks are rows (`entrance_acks`), so with several servers on one PostgreSQL the server
that drains sees the ack an agent sent to another.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from dockyard.errors import RetryableConflict
from dockyard.server.context import ServerContext
from dockyard.stacks.entrance import EntranceRoutes, Leg, Route, digest, networks, routes
from dockyard.store import entrance as store

ACK_FRESH = 90.0  # s: an entrance not heard from for longer is not waited for (down or gone)
DRAIN_TIMEOUT = 10.0  # s: the most a stop waits for the entrances to reload
DRAIN_GRACE = 1.0  # s after the reload: requests in flight on the drained replica finish
POLL = 0.05


def current(ctx: ServerContext) -> EntranceRoutes:
    with ctx.db.read() as sess:
        found = routes(store.published(sess))
    return EntranceRoutes(digest=digest(found), routes=found)


def legs(ctx: ServerContext, host: str, found: list[Route], attempts: int = 3) -> list[Leg]:
    """The legs of `host`'s entrance into the networks of `found` (allocated once each)."""
    wanted = networks(found)
    for attempt in range(attempts):
        try:
            with ctx.db.session() as sess:
                return store.legs(sess, host, wanted)
        except RetryableConflict:  # a placement took the address first: pick another
            if attempt == attempts - 1:
                raise
    return []


def ack(ctx: ServerContext, host: str, known: str) -> None:
    with ctx.db.session() as sess:
        store.ack(sess, host, known, datetime.now(UTC))


def wait_applied(ctx: ServerContext) -> tuple[bool, list[str]]:
    """Until every entrance heard from lately runs the current routes: (whether there is
    any entrance, the hosts that had not confirmed when DRAIN_TIMEOUT ran out)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        want = current(ctx).digest
        with ctx.db.read() as sess:
            running = store.acks(sess, datetime.now(UTC) - timedelta(seconds=ACK_FRESH))
        behind = sorted(host for host, known in running.items() if known != want)
        if not behind or time.monotonic() >= deadline:
            return bool(running), behind
        time.sleep(POLL)
