"""/v1/volumes: named data volumes of the caller's project.

A volume is created explicitly here or implicitly by the first launch that mounts it
(`server/instances.py`), and is bound to the host of that first instance. Its Docker volume
`dyv-<id>` exists only on that host and is removed through the host's agent when the volume is
deleted — never while an instance of the project still mounts it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from dockyard.errors import Conflict
from dockyard.model.ids import new_id
from dockyard.model.volume import Volume, VolumeCreate, docker_volume_name
from dockyard.server import auth
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import quotas, records
from dockyard.store.tables import HostRow, VolumeRow

router = APIRouter(prefix="/v1/volumes", tags=["volumes"])


@router.post("", status_code=201, response_model=Volume)
def create_volume(spec: VolumeCreate, caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> Volume:
    project_id = caller.project
    try:
        with ctx.db.session() as sess:
            if sess.scalar(select(VolumeRow.id).where(VolumeRow.project_id == project_id,
                                                      VolumeRow.name == spec.name)):
                raise Conflict(f"a volume named {spec.name!r} already exists")
            quotas.enforce(sess, project_id, quotas.Claim(volumes=1))
            row = VolumeRow(id=new_id(), name=spec.name, project_id=project_id, host_id=None)
            sess.add(row)
            sess.flush()
            return records.volume_model(sess, row, records.volume_users(sess, project_id))
    except IntegrityError as exc:  # UNIQUE(project_id, name): a concurrent create won
        raise Conflict(f"a volume named {spec.name!r} already exists") from exc


@router.get("")
def list_volumes(limit: int = Query(100, ge=1, le=1000), after: str = "",
                 caller: Caller = Depends(auth.user),
                 ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    project_id = caller.project
    with ctx.db.session() as sess:
        rows = list(sess.scalars(select(VolumeRow).where(VolumeRow.project_id == project_id,
                                                         VolumeRow.name > after)
                                 .order_by(VolumeRow.name).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
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
        row = sess.scalar(select(VolumeRow).where(VolumeRow.id == records.volume_by_ref(
            sess, project_id, ref).id).with_for_update())  # serializes with launches
        assert row is not None
        users = records.volume_users(sess, project_id).get(row.name, [])
        if users:
            raise Conflict(f"volume {row.name} is attached to instance(s) {', '.join(users)}")
        sess.delete(row)
        sess.flush()
        host = sess.get(HostRow, row.host_id) if row.host_id else None
        if host is not None:
            # Still inside the transaction: if the agent cannot remove the Docker volume the
            # row comes back, so a volume is never forgotten while its data lives on.
            ctx.agents.remove_volume(host.name, host.api_url, host.api_secret,
                                     docker_volume_name(row.id))
