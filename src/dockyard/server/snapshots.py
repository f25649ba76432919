"""Snapshots: commit an instance while it runs, push it, archive its named volumes.

    create: checks (not `creating`, name free, host up) ─▶ agent: docker commit (same PID;
        paused if asked) + push to REGISTRY/snapshot/<project>-<instance>:<name> ─▶ each
        named volume streamed agent → server into HOME/snapshots/<id>/volumes/<name>.tar
        ─▶ row. A failure leaves no row and no archive.
    launch SNAPSHOT NEW: place ─▶ new volumes NEW-<name> bound to the chosen host, filled from
        the archives by its agent before the instance exists ─▶ the usual create, pinned there
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dockyard.errors import Conflict, InvalidRequest, NotFound
from dockyard.model.ids import new_id
from dockyard.model.instance import InstanceCreate, InstanceState, VolumeSpec
from dockyard.model.snapshot import Snapshot, SnapshotCreate, SnapshotVolume
from dockyard.model.volume import docker_volume_name
from dockyard.server import instances
from dockyard.server.agent_proxy import AgentClient, host_target
from dockyard.server.context import ServerContext
from dockyard.store import events, quotas, records
from dockyard.store.tables import InstanceRow, ProjectRow, SnapshotRow, VolumeRow


def snapshot_dir(ctx: ServerContext, snapshot_id: str) -> Path:
    return ctx.settings.home / "snapshots" / snapshot_id


def model(sess: Session, row: SnapshotRow) -> Snapshot:
    project = sess.get(ProjectRow, row.project_id)
    return Snapshot(id=row.id, name=row.name, project=project.name if project else "",
                    instance=row.instance_name, image=row.image,
                    volumes=[SnapshotVolume.model_validate(v) for v in row.volumes],
                    size=row.size, created_at=records.as_utc(row.created_at))


def named_volumes(sess: Session, row: InstanceRow) -> list[tuple[VolumeSpec, str]]:
    """(the instance's named volume, its Docker volume name)."""
    specs = [VolumeSpec.model_validate(v) for v in row.volumes]
    docker = records.docker_volumes(sess, row)
    return [(s, d.source) for s, d in zip(specs, docker, strict=True) if not s.is_host_path]


def _plan(ctx: ServerContext, project_id: str, ref: str,
          body: SnapshotCreate) -> tuple[SnapshotRow, AgentClient, list[tuple[VolumeSpec, str]]]:
    if not ctx.registry.address:
        raise InvalidRequest("this cluster has no image registry")
    with ctx.db.session() as sess:
        row = records.instance_by_ref(sess, project_id, ref)
        if row.state in (InstanceState.creating, InstanceState.deleting):
            raise Conflict(f"instance {row.name} is {row.state}: nothing to snapshot yet")
        name = body.tag or f"{row.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        if sess.scalar(select(SnapshotRow.id).where(SnapshotRow.project_id == project_id,
                                                    SnapshotRow.name == name)):
            raise Conflict(f"a snapshot named {name!r} already exists")
        target = host_target(ctx, sess, row.host_id, f"instance {row.name}")
        image = f"{ctx.registry.address}/snapshot/{project_id}-{row.name}:{name}"
        snap = SnapshotRow(id=new_id(), name=name, project_id=project_id, instance_id=row.id,
                           instance_name=row.name, image=image, volumes=[], size=0,
                           spec={"hostname": row.hostname, "limits": row.limits,
                                 "env": row.env, "network_id": row.network_id})
        return snap, target, named_volumes(sess, row)


def create(ctx: ServerContext, project_id: str, ref: str, body: SnapshotCreate) -> Snapshot:
    with ctx.db.session() as sess:  # refuse early, before committing anything on the host
        quotas.enforce(sess, project_id, quotas.Claim(snapshots=1))
    snap, target, volumes = _plan(ctx, project_id, ref, body)
    folder = snapshot_dir(ctx, snap.id)
    try:
        target.commit(str(snap.instance_id), snap.image, body.pause)
        archived = []
        for spec, docker_name in volumes:
            size = target.archive_to(docker_name, folder / "volumes" / f"{spec.source}.tar")
            archived.append(SnapshotVolume(name=spec.source, target=spec.target,
                                           read_only=spec.read_only, size=size).model_dump())
        snap.volumes = archived
        snap.size = (ctx.registry.size(*_name_tag(snap.image)) or 0) + sum(
            int(v["size"]) for v in archived)
        with ctx.db.session() as sess:
            quotas.enforce(sess, project_id, quotas.Claim(snapshots=1))  # under the lock
            sess.add(snap)
            sess.flush()
            events.record(sess, sess.get(InstanceRow, snap.instance_id), "snapshot",
                          f"snapshot {snap.name} taken ({snap.image})")
            return model(sess, snap)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _name_tag(image: str) -> tuple[str, str]:
    path = image.split("/", 1)[1]
    name, _, tag = path.rpartition(":")
    return name, tag


def by_name(sess: Session, project_id: str, ref: str) -> SnapshotRow:
    row = sess.scalar(select(SnapshotRow).where(SnapshotRow.project_id == project_id,
                                                or_(SnapshotRow.name == ref,
                                                    SnapshotRow.id == ref)))
    if row is None:
        raise NotFound(f"snapshot {ref!r} not found")
    return row


def list_(ctx: ServerContext, project_id: str, instance: str | None) -> list[Snapshot]:
    with ctx.db.session() as sess:
        query = select(SnapshotRow).where(SnapshotRow.project_id == project_id)
        if instance:
            query = query.where(SnapshotRow.instance_name == instance)
        return [model(sess, r) for r in sess.scalars(query.order_by(SnapshotRow.created_at))]


def delete(ctx: ServerContext, project_id: str, ref: str) -> None:
    with ctx.db.session() as sess:
        row = by_name(sess, project_id, ref)
        users = sess.scalars(select(InstanceRow.name).where(InstanceRow.image == row.image))
        if names := list(users):
            raise Conflict(f"snapshot {row.name} is used by {', '.join(names)}")
        image, snap_id = row.image, row.id
        sess.delete(row)
    ctx.registry.delete(*_name_tag(image))
    shutil.rmtree(snapshot_dir(ctx, snap_id), ignore_errors=True)


def prepare_launch(ctx: ServerContext, project_id: str, spec: InstanceCreate) -> InstanceCreate:
    """`launch SNAPSHOT NAME`: the spec from the snapshot, pinned to the placed host, whose
    new volumes are already filled. Any other image name passes through unchanged."""
    with ctx.db.read() as sess:
        snap = sess.scalar(select(SnapshotRow).where(SnapshotRow.project_id == project_id,
                                                     SnapshotRow.name == spec.image))
        if snap is None:
            return spec
        archives = [SnapshotVolume.model_validate(v) for v in snap.volumes]
        folder, image = snapshot_dir(ctx, snap.id), snap.image
    volumes = list(spec.volumes) or [
        VolumeSpec(source=f"{spec.name}-{a.name}", target=a.target, read_only=a.read_only)
        for a in archives]
    spec = spec.model_copy(update={"image": image, "volumes": volumes})
    plan, _, _ = instances.validate(ctx, project_id, spec)
    spec = spec.model_copy(update={"host": plan.host_name})
    _restore(ctx, project_id, plan.host_id, spec, {a.name: folder / "volumes" / f"{a.name}.tar"
                                                  for a in archives}, archives)
    return spec


def _restore(ctx: ServerContext, project_id: str, host_id: str, spec: InstanceCreate,
             files: dict[str, Path], archives: list[SnapshotVolume]) -> None:
    by_target = {a.target: a.name for a in archives}
    with ctx.db.session() as sess:
        target = host_target(ctx, sess, host_id, "launch")
        todo = []
        for vol in spec.volumes:
            if vol.is_host_path or vol.target not in by_target:
                continue
            if sess.scalar(select(VolumeRow.id).where(VolumeRow.project_id == project_id,
                                                      VolumeRow.name == vol.source)):
                raise Conflict(f"volume {vol.source} exists; the snapshot's data goes into "
                               "new volumes")
            row = VolumeRow(id=new_id(), name=vol.source, project_id=project_id,
                            host_id=host_id)
            sess.add(row)
            todo.append((docker_volume_name(row.id), files[by_target[vol.target]]))
    for docker_name, path in todo:
        target.restore_from(docker_name, path)
