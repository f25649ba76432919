"""/v1/networks: Linux-bridge segments with a subnet and a gateway on the bridge, no NAT.

A network belongs to the project of the admin who created it. Members see and launch on their
project's networks and the shared ones (`default` is always shared); others answer 404.
Only admins create or delete networks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from dockyard.errors import Conflict
from dockyard.model.network import Network, NetworkCreate
from dockyard.server import auth
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import networks, records

router = APIRouter(prefix="/v1/networks", tags=["networks"])


def create_network(ctx: ServerContext, project_id: str, spec: NetworkCreate) -> Network:
    problem = spec.gateway_problem()
    if problem:
        raise Conflict(problem)
    with ctx.db.session() as sess:
        row = networks.create(sess, project_id, spec)
        model = records.network_model(sess, row)
    ctx.notifier.bump()
    return model


@router.post("", status_code=201, response_model=Network)
def post_network(spec: NetworkCreate, caller: Caller = Depends(auth.admin),
                 ctx: ServerContext = Depends(auth.context)) -> Network:
    assert caller.project_id is not None
    return create_network(ctx, caller.project_id, spec)


@router.get("")
def list_networks(limit: int = Query(100, ge=1, le=1000), after: str = "",
                  caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    with ctx.db.session() as sess:
        rows, more = networks.page(sess, after, limit,
                                   visible_to=None if caller.is_admin else caller.project)
        items = [records.network_model(sess, r).model_dump(mode="json") for r in rows]
    return {"items": items, "next": rows[-1].name if more else None}


@router.get("/{ref}", response_model=Network)
def show_network(ref: str, caller: Caller = Depends(auth.user),
                 ctx: ServerContext = Depends(auth.context)) -> Network:
    assert caller.project_id is not None
    with ctx.db.session() as sess:
        row = records.visible_network(sess, caller.project_id, ref, admin=caller.is_admin)
        return records.network_model(sess, row)


@router.delete("/{ref}", status_code=204)
def delete_network(ref: str, _: Caller = Depends(auth.admin),
                   ctx: ServerContext = Depends(auth.context)) -> None:
    with ctx.db.session() as sess:
        row = records.network_by_ref(sess, ref)
        used = networks.instance_count(sess, row.id)
        if used:
            raise Conflict(f"network {row.name} is used by {used} instance(s)")
        networks.delete(sess, row)
    ctx.notifier.bump()
