"""What the HTTP entrance publishes: every stack service with `x-dockyard.http` (its current
version's spec) and its replicas, across projects (the entrance is the cluster's). Read-only;
`stacks/entrance.py` turns this into routes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.stacks.entrance import Published, Replica
from dockyard.store import stacks
from dockyard.store.stack_tables import StackRow, StackVersionRow
from dockyard.store.tables import ProjectRow


def published(sess: Session) -> list[Published]:
    rows = sess.execute(select(ProjectRow.name, StackRow.id, StackRow.name,
                               StackVersionRow.spec)
                        .join(ProjectRow, ProjectRow.id == StackRow.project_id)
                        .join(StackVersionRow, (StackVersionRow.stack_id == StackRow.id)
                              & (StackVersionRow.version == StackRow.version)))
    out = []
    for project, stack_id, stack, spec in rows:
        services = {name: svc["http"] for name, svc in (spec.get("services") or {}).items()
                    if svc.get("http")}
        if not services:
            continue
        replicas = stacks.replicas(sess, stack_id)
        for name, http in services.items():
            out.append(Published(
                project=project, stack=stack, service=name, host=str(http["host"]),
                port=int(http["port"]),
                replicas=tuple(Replica(r.instance_name, r.state, r.ip, r.health) for r in replicas
                               if r.service == name and r.instance_name is not None)))
    return out
