"""Rebuild (same host, another image) and evacuation (a down host's instances elsewhere).

Both keep the instance's identity (name, IP, MAC, hostname, limits, volumes) and give it a
new generation, so a copy that still exists is stale by construction (fencing, DESIGN.md):
rebuild's agent sets its old container aside (stopped, renamed, kept); a returning evacuated
host finds its copies unknown to the server and stops them, never deleting them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from dockyard.errors import BackendError, Conflict, DockyardError, NotFound
from dockyard.model.instance import DesiredState, InstanceState
from dockyard.server import image_access, placement
from dockyard.server.agent_proxy import AgentClient
from dockyard.server.context import ServerContext
from dockyard.server.migrate import choose_target
from dockyard.server.placement import host_is_up
from dockyard.server.snapshots import named_volumes, snapshot_dir
from dockyard.store import events, ledger, operations, records, revision
from dockyard.store import instances as instance_rows
from dockyard.store import snapshots as snapshot_rows
from dockyard.store import volumes as volume_rows
from dockyard.store.tables import InstanceRow, SnapshotRow

REBUILD_TIMEOUT = 120.0


def rebuild(ctx: ServerContext, project_id: str, ref: str, image: str) -> dict[str, Any]:
    resolved = ctx.registry.resolve(image)
    if resolved is None:
        raise NotFound(f"image {image!r} is not in the registry")
    with ctx.db.session() as sess:
        row = records.instance_by_ref(sess, project_id, ref)
        image_access.check_launch(sess, project_id, image, ctx.registry.address)
        if row.state in (InstanceState.creating, InstanceState.deleting) or row.options.get(
                "migrating"):
            raise Conflict(f"instance {row.name} is {row.state}; rebuild it later")
        rev = revision.bump(sess)
        row.image, row.generation, row.revision = resolved, row.generation + 1, rev
        want = row.desired_state
        row.state = (InstanceState.starting if want == DesiredState.running
                     else InstanceState.stopping)
        op = operations.start(sess, row, "rebuild", state=str(want), revision=rev)
        events.record(sess, row, "rebuild", f"rebuild from {resolved} "
                      f"(generation {row.generation})")
        op_id = op.id
    ctx.notifier.bump()
    _wait_op(ctx, op_id)
    return {"operation": op_id, "image": resolved}


def _wait_op(ctx: ServerContext, op_id: str) -> None:
    deadline = time.monotonic() + REBUILD_TIMEOUT
    while time.monotonic() < deadline:
        with ctx.db.session() as sess:
            op = operations.get(sess, op_id)
            if op is not None and op.status != "running":
                if op.status != "success":
                    raise BackendError(f"rebuild failed: {op.error}")
                return
        time.sleep(0.1)
    raise BackendError(f"rebuild did not finish in {REBUILD_TIMEOUT:.0f} s")


def evacuate(ctx: ServerContext, ref: str, force: bool) -> dict[str, Any]:
    with ctx.db.session() as sess:
        host = records.host_by_ref(sess, ref)
        if host_is_up(host, ctx.settings.heartbeat_timeout) and not force:
            raise Conflict(f"host {host.name} is up; evacuate only a down host (or --force)")
        host_id, host_name = host.id, host.name
        ids = instance_rows.live_ids_on_host(sess, host_id)
    moved: dict[str, str] = {}
    failed: dict[str, str] = {}
    for instance_id in ids:
        try:
            name, target = move(ctx, instance_id, host_name)
            moved[name] = target
        except DockyardError as exc:
            failed[instance_id] = exc.message
    ctx.notifier.bump()
    return {"host": host_name, "moved": moved, "failed": failed}


def move(ctx: ServerContext, instance_id: str, from_host: str) -> tuple[str, str]:
    """Re-place one instance off a down host: last snapshot (or its image), same IP, new
    generation; named volumes re-bound to the new host (filled from the snapshot's archives
    when there is one, else empty: their data stayed on the down host)."""
    return placement.placing(ctx.db, lambda sess: _move_in(ctx, sess, instance_id, from_host))


def _move_in(ctx: ServerContext, sess: Session, instance_id: str,
             from_host: str) -> tuple[str, str]:
    row = instance_rows.get(sess, instance_id)
    assert row is not None
    ledger.release_cores(sess, row.id)
    target, _ = choose_target(ctx, sess, row, None)
    snap = snapshot_rows.latest_of(sess, row.id)
    row.host_id, row.generation = target.id, row.generation + 1
    row.image = snap.image if snap else row.image
    row.state = InstanceState.starting
    folder = snapshot_dir(ctx, snap.id) if snap else None
    tgt = AgentClient(target.name, target.api_url, target.api_secret,
                     ctx.agents.verify)
    for docker_name, path in _rebind_volumes(sess, row, target.id, snap, folder):
        tgt.restore_from(docker_name, path)  # before the commit: filled before creation
    row.revision = revision.bump(sess)
    operations.start(sess, row, "evacuate", state=str(row.desired_state),
                     revision=row.revision)
    events.record(sess, row, "evacuated", f"{from_host} is down: re-placed on "
                  f"{target.name}, generation {row.generation}"
                  + (f", from snapshot {snap.name}" if snap else ""))
    return row.name, target.name


def _rebind_volumes(sess: Any, row: InstanceRow, host_id: str, snap: SnapshotRow | None,
                    folder: Path | None) -> list[tuple[str, Path]]:
    archived = {v["target"]: v["name"] for v in (snap.volumes if snap else [])}
    restores = []
    for spec, docker_name in named_volumes(sess, row):
        vol = volume_rows.by_name(sess, row.project_id, spec.source)
        if vol is not None:
            vol.host_id = host_id
        if folder is not None and spec.target in archived:
            restores.append((docker_name, folder / "volumes" / f"{archived[spec.target]}.tar"))
    return restores


