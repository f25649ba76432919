"""/v1/stacks: deploy (the CLI sends the loaded compose model), list, show, replicas, scale,
remove. Project-scoped like instances; the replicas are ordinary instances."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from dockyard.model.stack import DeployResult, StackRollback, StackScale, StackSpec, StackView
from dockyard.server import auth
from dockyard.server import stacks as service
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.server.waiting import wait_for

router = APIRouter(prefix="/v1/stacks", tags=["stacks"])

WaitOpt = Query(False, description="answer once every new replica is running (or failed)")


async def _waited(ctx: ServerContext, project: str, result: DeployResult,
                  wait: bool) -> dict[str, Any]:
    if wait:
        for op_id in result.operations:
            await wait_for(ctx, op_id, ctx.settings.wait_timeout)
        view = await run_in_threadpool(service.show, ctx, project, result.name)
        result = DeployResult(**view.model_dump(), changed=result.changed,
                              actions=result.actions, operations=result.operations)
    return result.model_dump(mode="json")


@router.post("", response_model=DeployResult)
async def deploy_stack(spec: StackSpec, wait: bool = WaitOpt,
                       caller: Caller = Depends(auth.user),
                       ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """Create the stack or update it to `spec` (a new version when it changed) and converge
    its replicas. A deploy that fails half-way removes what it created."""
    result = await run_in_threadpool(service.deploy, ctx, caller.project, spec)
    return await _waited(ctx, caller.project, result, wait)


@router.get("")
def list_stacks(limit: int = Query(100, ge=1, le=1000), after: str = "",
                caller: Caller = Depends(auth.user),
                ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    views = service.page(ctx, caller.project, after, limit + 1)
    more = len(views) > limit
    views = views[:limit]
    return {"items": [v.model_dump(mode="json") for v in views],
            "next": views[-1].name if more else None}


@router.get("/{name}", response_model=StackView)
def show_stack(name: str, caller: Caller = Depends(auth.user),
               ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    return service.show(ctx, caller.project, name).model_dump(mode="json")


@router.get("/{name}/replicas")
def stack_replicas(name: str, caller: Caller = Depends(auth.user),
                   ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    view = service.show(ctx, caller.project, name)
    return {"items": [r.model_dump(mode="json") for r in view.replicas], "next": None}


@router.post("/{name}/scale", response_model=DeployResult)
async def scale_stack(name: str, body: StackScale, wait: bool = WaitOpt,
                      caller: Caller = Depends(auth.user),
                      ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    result = await run_in_threadpool(service.scale, ctx, caller.project, name,
                                     dict(body.replicas))
    return await _waited(ctx, caller.project, result, wait)


@router.get("/{name}/history")
def stack_history(name: str, caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """Every version of the stack, oldest first; `current` marks the one deployed."""
    return {"items": [v.model_dump(mode="json")
                      for v in service.history(ctx, caller.project, name)], "next": None}


@router.post("/{name}/rollback", response_model=DeployResult)
async def rollback_stack(name: str, body: StackRollback, wait: bool = WaitOpt,
                         caller: Caller = Depends(auth.user),
                         ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """Deploy the previous version again (the newest earlier one that differs and did not
    fail), or only `service`'s part of it; 409 when there is none."""
    result = await run_in_threadpool(service.rollback, ctx, caller.project, name,
                                     body.service)
    return await _waited(ctx, caller.project, result, wait)


@router.delete("/{name}")
async def remove_stack(name: str, wait: bool = Query(False, description="answer once every "
                                                     "replica is deleted"),
                       caller: Caller = Depends(auth.user),
                       ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    ops = await run_in_threadpool(service.remove, ctx, caller.project, name)
    if wait:
        for op_id in ops:
            await wait_for(ctx, op_id, ctx.settings.wait_timeout)
    return {"name": name, "deleted": True, "operations": ops}
