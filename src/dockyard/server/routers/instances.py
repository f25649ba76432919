"""/v1/instances: create, list, show, delete, start/stop/restart, exec, logs, events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from dockyard.errors import Conflict
from dockyard.model.common import Event
from dockyard.model.instance import (
    ExecRequest,
    ExecResult,
    Instance,
    InstanceAction,
    InstanceCreate,
    InstancePatch,
    InstanceState,
    InstanceType,
    PlacementExplanation,
    Usage,
)
from dockyard.model.units import MAX_AMOUNT as MAX_ID
from dockyard.server import auth, hosts, instances, powers, resize
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.server.snapshots import prepare_launch
from dockyard.server.waiting import wait_for
from dockyard.store import events, records
from dockyard.store import hosts as host_rows
from dockyard.store import instances as instance_rows

router = APIRouter(prefix="/v1/instances", tags=["instances"])


def _show(ctx: ServerContext, project_id: str, ref: str) -> dict[str, Any]:
    with ctx.db.read() as sess:
        row = records.instance_by_ref(sess, project_id, ref)
        return hosts.instance_view(sess, row, ctx.settings).model_dump(mode="json")


async def _answer(ctx: ServerContext, project_id: str, ref: str, op_id: str, wait: bool,
                  done: int = 200) -> JSONResponse:
    """The instance with its operation: at once (202), or with `wait` once the operation has
    ended (status `done`)."""
    if wait:
        await wait_for(ctx, op_id, ctx.settings.wait_timeout)
    body = await run_in_threadpool(_show, ctx, project_id, ref)
    body["operation"] = op_id
    return JSONResponse(body, status_code=done if wait else 202)


@router.post("", status_code=202, response_model=Instance,
             responses={202: {"description": "accepted; state `creating`"},
                        200: {"model": PlacementExplanation,
                              "description": "`explain=true`: where it would go; nothing "
                              "is created"}})
async def create_instance(spec: InstanceCreate, wait: bool = False,
                          explain: bool = Query(False, description="validate and explain the "
                                                "placement (each host's verdict and score) "
                                                "without creating anything"),
                          caller: Caller = Depends(auth.user),
                          ctx: ServerContext = Depends(auth.context)) -> JSONResponse:
    project = caller.project
    powers.check_admin_powers(spec, caller.role)
    if explain:
        result = await run_in_threadpool(instances.explain_placement, ctx, project, spec)
        return JSONResponse(result.model_dump(mode="json"), status_code=200)
    spec = await run_in_threadpool(prepare_launch, ctx, project, spec)  # SNAPSHOT as image
    # the instance as the create left it: a failed create's report may remove the row first
    op_id, view = await run_in_threadpool(instances.create_and_view, ctx, project, spec,
                                          caller.role == powers.ADMIN)
    if wait:
        return await _answer(ctx, project, view.id, op_id, wait, done=201)
    return JSONResponse({**view.model_dump(mode="json"), "operation": op_id}, status_code=202)


@router.get("")
def list_instances(limit: int = Query(100, ge=1, le=1000), after: str = "",
                   caller: Caller = Depends(auth.user),
                   ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    with ctx.db.read() as sess:
        rows, more = instance_rows.page(sess, caller.project, after, limit)
        items = [hosts.instance_view(sess, r, ctx.settings).model_dump(mode="json")
                 for r in rows]
    return {"items": items, "next": rows[-1].name if more else None}


@router.get("/{ref}", response_model=Instance)
def show_instance(ref: str, caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    return _show(ctx, caller.project, ref)


@router.delete("/{ref}", status_code=202)
async def delete_instance(ref: str, force: bool = False, wait: bool = False,
                          caller: Caller = Depends(auth.user),
                          ctx: ServerContext = Depends(auth.context)) -> JSONResponse:
    # the instance as the delete left it: the agent may remove the row before a read here
    op_id, view = await run_in_threadpool(instances.delete_and_view, ctx, caller.project, ref,
                                          force)
    if wait:
        await wait_for(ctx, op_id, ctx.settings.wait_timeout)
        return JSONResponse({"id": view.id, "name": view.name, "operation": op_id,
                             "deleted": True}, status_code=200)
    return JSONResponse({**view.model_dump(mode="json"), "operation": op_id}, status_code=202)


@router.patch("/{ref}", status_code=202, response_model=Instance)
async def resize_instance(ref: str, body: InstancePatch, wait: bool = False,
                          caller: Caller = Depends(auth.user),
                          ctx: ServerContext = Depends(auth.context)) -> JSONResponse:
    """Live resize: the new limits take effect in place (same PID)."""
    project = caller.project
    op_id = await run_in_threadpool(resize.resize, ctx, project, ref, body.limits)
    return await _answer(ctx, project, ref, op_id, wait)


@router.get("/{ref}/usage", response_model=Usage)
def instance_usage(ref: str, caller: Caller = Depends(auth.user),
                   ctx: ServerContext = Depends(auth.context)) -> Usage:
    """Memory (rss and page cache apart), OOM kills and pids, read now from the cgroups."""
    host, url, secret, instance_id = agent_target(ctx, caller.project, ref)
    return ctx.agents.usage(host, url, secret, instance_id)


@router.post("/{ref}/actions/{action}", status_code=202, response_model=Instance)
async def instance_action(ref: str, action: InstanceAction, wait: bool = False,
                          caller: Caller = Depends(auth.user),
                          ctx: ServerContext = Depends(auth.context)) -> JSONResponse:
    project = caller.project
    op_id = await run_in_threadpool(instances.set_desired, ctx, project, ref, action)
    return await _answer(ctx, project, ref, op_id, wait)


def agent_target(ctx: ServerContext, project_id: str, ref: str) -> tuple[str, str, str, str]:
    with ctx.db.session() as sess:
        row = records.instance_by_ref(sess, project_id, ref)
        if row.state != InstanceState.running:
            raise Conflict(f"instance {row.name} is {row.state}, not running")
        host = host_rows.get(sess, row.host_id)
        if host is None:
            raise Conflict(f"instance {row.name} has no host")
        return host.name, host.api_url, host.api_secret, row.id


@router.post("/{ref}/exec", response_model=ExecResult)
def exec_instance(ref: str, body: ExecRequest, timeout: float = Query(300, gt=0, le=3600),
                  caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> ExecResult:
    host, url, secret, instance_id = agent_target(ctx, caller.project, ref)
    return ctx.agents.exec(host, url, secret, instance_id, body, timeout)


@router.get("/{ref}/logs", response_class=PlainTextResponse,
            responses={200: {"description": "the console output, streamed"}})
async def instance_logs(ref: str, follow: bool = False, tail: str = "all",
                        caller: Caller = Depends(auth.user),
                        ctx: ServerContext = Depends(auth.context)) -> StreamingResponse:
    with ctx.db.session() as sess:
        row = records.instance_by_ref(sess, caller.project, ref)
        host = host_rows.get(sess, row.host_id)
        if host is None or (row.container_id is None and row.type != InstanceType.vm):
            raise Conflict(f"instance {row.name} has no container yet")
        target = (host.name, host.api_url, host.api_secret, row.id)
    stream = ctx.agents.stream_logs(*target, {"follow": str(follow).lower(), "tail": tail})
    first = await anext(aiter(stream), b"")  # surface agent errors as a proper status

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in stream:
            yield chunk

    return StreamingResponse(body(), media_type="text/plain")


@router.get("/{ref}/events")
def instance_events(ref: str, limit: int = Query(100, ge=1, le=1000),
                              after: int = Query(0, ge=0, le=MAX_ID),
                    caller: Caller = Depends(auth.user),
                    ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    with ctx.db.session() as sess:
        row = records.instance_by_ref(sess, caller.project, ref)
        rows, more = events.page(sess, after, limit, instance_id=row.id)
        items = [Event.model_validate(records.event_model(sess, r)).model_dump(mode="json")
                 for r in rows]
    return {"items": items, "next": str(rows[-1].id) if more else None}
