"""The background convergence loop of app stacks: level-triggered, like the agent's resync.

    every INTERVAL s ─▶ each stack of the store ─▶ needs work? (status not converged and not
        paused, or a replica missing, not running, unhealthy or of an old template)
      ─▶ this process's lock for the stack (skipped when a request holds it)
      ─▶ the stack's lease (`stacks.lease_owner/lease_until`: one conditional UPDATE, so on
         PostgreSQL with several servers only one works a stack at a time; an expired lease
         of a server that died is taken over)
      ─▶ server/stacks.settle: StackReconciler passes for up to SLICE s, outcome stored
      ─▶ lease released

Short slices keep a request to the same stack (which takes the same lock) from waiting
long. Nothing is kept between rounds: a server restarted (or another server) picks an
unfinished update, a rollback or a repair up from the store, the update's `delay` included
(each service's `last_batch_at`). Errors are logged and the stack is tried again next
round.
"""

from __future__ import annotations

import asyncio
import logging
import time

from dockyard.errors import Conflict, DockyardError
from dockyard.model.stack import StackSpec
from dockyard.server import stacks
from dockyard.server.context import ServerContext
from dockyard.server.stacks_reconciler import StackReconciler, lost_hosts
from dockyard.store import stacks as store
from dockyard.store.stacks import StackState

log = logging.getLogger(__name__)

INTERVAL = 2.0  # seconds between rounds
SLICE = 2.0  # seconds one stack is driven before the next (or a request) gets its turn


def needs_work(state: StackState, replicas: list[store.ReplicaState],
               lost: frozenset[str] = frozenset()) -> bool:
    """`lost`: the names of hosts silent long enough that their replicas move off them."""
    if any(r.host in lost for r in replicas if r.instance_name is not None):
        return True
    if state.status == "paused":
        return False
    if state.status != "converged":
        return True
    for name, svc in state.services.items():
        live = [r for r in replicas if r.service == name and r.instance_name is not None]
        if len(live) != svc.replicas or any(
                r.state != "running" or r.health == "unhealthy"
                or (r.template_hash is not None and r.template_hash != svc.template_hash)
                for r in live):
            return True
    return any(r.service not in state.services or r.draining for r in replicas)


def converge_once(ctx: ServerContext) -> list[str]:
    """One round; the names of the stacks worked on."""
    with ctx.db.read() as sess:
        lost = lost_hosts(sess, ctx.settings.heartbeat_timeout)
        todo = [state for state in store.all_stacks(sess)
                if needs_work(state, store.replicas(sess, state.id), lost)]
    worked = []
    for state in todo:
        try:
            with stacks.lock(ctx, state.project_id, state.name, timeout=0):
                stacks.renew(ctx, state.id, state.name)
                try:
                    _converge(ctx, state)
                finally:
                    stacks.release(ctx, state.id)
            worked.append(state.name)
        except Conflict:
            continue  # a request or another server works it now
        except DockyardError as exc:
            log.warning("stack %s: %s (next round tries again)", state.name, exc.message)
    return worked


def _converge(ctx: ServerContext, state: StackState) -> None:
    with ctx.db.read() as sess:
        fresh = store.by_id(sess, state.id)  # as it is now that the lease is ours
    if fresh is None:
        return
    spec = StackSpec.model_validate(fresh.spec)
    rec = StackReconciler(ctx, fresh.project_id, fresh.id, spec, fresh.services,
                          updating=fresh.status in ("updating", "rolling_back"),
                          rolling_back=fresh.status == "rolling_back")
    removed = sorted({r.service for r in _replicas(ctx, fresh.id)} - set(fresh.services))
    rec.run(removed)
    stacks.settle(ctx, fresh.project_id, fresh.id, rec, time.monotonic() + SLICE)


def _replicas(ctx: ServerContext, stack_id: str) -> list[store.ReplicaState]:
    with ctx.db.read() as sess:
        return store.replicas(sess, stack_id)


async def run(ctx: ServerContext) -> None:
    """The server's task: a round every INTERVAL seconds, in a worker thread."""
    while True:
        try:
            await asyncio.to_thread(converge_once, ctx)
        except Exception:  # a bug must not end the loop; the next round tries again
            log.exception("stack convergence round failed")
        await asyncio.sleep(INTERVAL)
