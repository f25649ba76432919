"""/v1/volumes: named data volumes of the caller's project.

A volume is created explicitly here or implicitly by the first launch that mounts it
(`server/instances.py`), and is bound to the host of that first instance. Its Docker volume
`dyv-<id>` exists only on that host and is removed through the host's agent when the volume is
deleted — never while an instance of the project still mounts it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from dockyard.errors import Conflict
from dockyard.model.volume import Volume, VolumeCreate, docker_volume_name
from dockyard.server import auth
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import hosts, records, volumes

router = APIRouter(prefix="/v1/volumes", tags=["volumes"])


@router.post("", status_code=201, response_model=Volume)
def create_volume(spec: VolumeCreate, caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> Volume:
    project_id = caller.project
    with ctx.db.session() as sess:
        row = volumes.create(sess, project_id, spec.name)
        return records.volume_model(sess, row, records.volume_users(sess, project_id))


@router.get("")
def list_volumes(limit: int = Query(100, ge=1, le=1000), after: str = "",
                 caller: Caller = Depends(auth.user),
                 ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    project_id = caller.project
    with ctx.db.session() as sess:
        rows, more = volumes.page(sess, project_id, after, limit)
        users = records.volume_users(sess, project_id)
        items = [records.volume_model(sess, r, users).model_dump(mode="json") for r in rows]
    return {"items": items, "next": rows[-1].name if more else None}


@router.get("/{ref}", response_model=Volume)
def show_volume(ref: str, caller: Caller = Depends(auth.user),
                ctx: ServerContext = Depends(auth.context)) -> Volume:
    project_id = caller.project
    with ctx.db.session() as sess:
        row = records.volume_by_ref(sess, project_id, ref)
        return records.volume_model(sess, row, records.volume_users(sess, project_id))


@router.delete("/{ref}", status_code=204)
def delete_volume(ref: str, caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> None:
    project_id = caller.project
    with ctx.db.session() as sess:
        row = volumes.locked(sess, project_id, ref)  # serializes with launches
        users = records.volume_users(sess, project_id).get(row.name, [])
        if users:
            raise Conflict(f"volume {row.name} is attached to instance(s) {', '.join(users)}")
        volumes.delete(sess, row)
        host = hosts.get(sess, row.host_id)
        if host is not None:
            # Still inside the transaction: if the agent cannot remove the Docker volume the
            # row comes back, so a volume is never forgotten while its data lives on.
            ctx.agents.remove_volume(host.name, host.api_url, host.api_secret,
                                     docker_volume_name(row.id))
