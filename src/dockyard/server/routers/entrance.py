"""`GET /v1/agent/entrance`: the routes of the cluster's HTTP entrance, for the agents that run
it (host token). Long-polled like the watch: given the digest of the routes it runs, an agent
is answered at once when they differ, else when a change is committed (the notifier) and they
then differ, else with the same routes after `timeout` seconds. `known` is also its
acknowledgement: the entrance of that host runs those routes (server/entrance.py)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from dockyard.server import auth
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.server.entrance import ack, current, legs
from dockyard.server.hosts import watch_timeout
from dockyard.stacks.entrance import EntranceRoutes

router = APIRouter(prefix="/v1/agent", tags=["agent"])


@router.get("/entrance", response_model=EntranceRoutes)
async def entrance(known: str = Query("", max_length=64, description="the digest the agent "
                                      "runs; the answer waits until the routes differ"),
                   timeout: float = Query(25.0, ge=0, le=300),
                   caller: Caller = Depends(auth.host),
                   ctx: ServerContext = Depends(auth.context)) -> EntranceRoutes:
    deadline = time.monotonic() + min(timeout, watch_timeout(ctx.settings))
    if caller.host_name:  # what it runs now: a drain waits for this (server/entrance.py)
        await run_in_threadpool(ack, ctx, caller.host_name, known)
    while True:
        token = ctx.notifier.token()
        reply = await run_in_threadpool(current, ctx)
        left = deadline - time.monotonic()
        if reply.digest != known or left <= 0 or ctx.notifier.closing:
            if caller.host_name:
                reply.legs = await run_in_threadpool(legs, ctx, caller.host_name, reply.routes)
            return reply
        await ctx.notifier.wait(token, left)
