"""/v1/snapshots, and the instance verbs that move or remake an instance:
POST /v1/instances/{ref}/snapshot, /migrate, /rebuild; POST /v1/hosts/{ref}/evacuate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from dockyard.errors import Forbidden
from dockyard.model.snapshot import (
    EvacuateRequest,
    MigrateRequest,
    RebuildRequest,
    Snapshot,
    SnapshotCreate,
)
from dockyard.server import auth, evacuate, live_migrate, migrate, snapshots
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext

router = APIRouter(tags=["snapshots"])


@router.post("/v1/instances/{ref}/snapshot", status_code=201, response_model=Snapshot)
async def create_snapshot(ref: str, body: SnapshotCreate, caller: Caller = Depends(auth.user),
                          ctx: ServerContext = Depends(auth.context)) -> Snapshot:
    """Commit the instance while it runs (same PID), push it, archive its named volumes."""
    return await run_in_threadpool(snapshots.create, ctx, caller.project, ref, body)


@router.get("/v1/snapshots")
def list_snapshots(instance: str | None = None, caller: Caller = Depends(auth.user),
                   ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    items = snapshots.list_(ctx, caller.project, instance)
    return {"items": [s.model_dump(mode="json") for s in items], "next": None}


@router.delete("/v1/snapshots/{ref}", status_code=204)
async def delete_snapshot(ref: str, caller: Caller = Depends(auth.user),
                          ctx: ServerContext = Depends(auth.context)) -> None:
    await run_in_threadpool(snapshots.delete, ctx, caller.project, ref)


@router.post("/v1/instances/{ref}/migrate")
async def migrate_instance(ref: str, body: MigrateRequest, caller: Caller = Depends(auth.user),
                           ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """Cold migration, or live (CRIU) with `live` (`check`: the preflight's report only,
    `fallback`: cold when the preflight fails); answers when it is over (the instance runs
    on the target, or on the source again after a failure: then the error)."""
    if body.host is not None and caller.role != "admin":
        raise Forbidden("only an admin may choose the target host")
    if body.check:  # the live preflight only: its report (ok or the named failures)
        report = await run_in_threadpool(live_migrate.check, ctx, caller.project, ref,
                                         body.host)
        return report.model_dump(mode="json")
    if body.live:
        return await run_in_threadpool(live_migrate.live, ctx, caller.project, ref,
                                       body.host, body.fallback)
    return await run_in_threadpool(migrate.migrate, ctx, caller.project, ref, body.host)


@router.post("/v1/instances/{ref}/rebuild")
async def rebuild_instance(ref: str, body: RebuildRequest, caller: Caller = Depends(auth.user),
                           ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    return await run_in_threadpool(evacuate.rebuild, ctx, caller.project, ref, body.image)


@router.post("/v1/hosts/{ref}/evacuate")
async def evacuate_host(ref: str, body: EvacuateRequest, _: Caller = Depends(auth.admin),
                        ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    return await run_in_threadpool(evacuate.evacuate, ctx, ref, body.force)
