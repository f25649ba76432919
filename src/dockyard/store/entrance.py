"""What the HTTP entrance publishes: every stack service with `x-dockyard.http` (its current
version's spec) and its replicas, across projects (the entrance is the cluster's). Read-only;
`stacks/entrance.py` turns this into routes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import ipam
from dockyard.stacks.entrance import Claim, Leg, Published, Replica
from dockyard.store import hosts, ledger, stacks
from dockyard.store.stack_tables import EntranceAckRow, StackRow, StackVersionRow
from dockyard.store.tables import Meta, NetworkRow, ProjectRow

CLAIMS_KEY = "entrance_claims"  # the meta row that serializes deploys checking their Hosts


def claims(sess: Session) -> list[Claim]:
    """Every Host the current version of a stack publishes, after taking the claims lock
    (held to the end of the transaction, which stores the deploy's version): two deploys
    claiming one Host cannot both pass the check."""
    row = sess.scalar(select(Meta).where(Meta.key == CLAIMS_KEY).with_for_update())
    if row is None:
        sess.add(Meta(key=CLAIMS_KEY, value=""))
        sess.flush()
    rows = sess.execute(select(StackRow.project_id, StackRow.name, StackVersionRow.spec)
                        .join(StackVersionRow, (StackVersionRow.stack_id == StackRow.id)
                              & (StackVersionRow.version == StackRow.version)))
    return [Claim(project=project_id, stack=stack, service=name, host=str(svc["http"]["host"]))
            for project_id, stack, spec in rows
            for name, svc in (spec.get("services") or {}).items() if svc.get("http")]


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
                replicas=tuple(Replica(r.instance_name, r.state, r.ip, r.health,
                                       r.network_id or "")
                               for r in replicas
                               if r.service == name and r.instance_name is not None
                               and not r.draining)))
    return out


def ack(sess: Session, host: str, digest: str, now: datetime) -> None:
    """The entrance of `host` runs the routes of `digest` (its agent asks for the next)."""
    row = sess.get(EntranceAckRow, host)
    if row is None:
        sess.add(EntranceAckRow(host_name=host, digest=digest, seen_at=now))
    else:
        row.digest, row.seen_at = digest, now


def acks(sess: Session, since: datetime) -> dict[str, str]:
    """host → the digest its entrance runs, for the entrances heard from since `since`."""
    rows = sess.execute(select(EntranceAckRow.host_name, EntranceAckRow.digest)
                        .where(EntranceAckRow.seen_at >= since))
    return {host: known for host, known in rows}


def legs(sess: Session, host_name: str, wanted: set[str]) -> list[Leg]:
    """The entrance of `host_name`'s leg on each network of `wanted`: an address of the
    network allocated in the ledger the first time (RetryableConflict when a concurrent
    placement took it), kept while the network and the host live. Networks gone meanwhile
    are left out."""
    host = hosts.by_name(sess, host_name)
    if host is None or not wanted:
        return []
    have = ledger.entrance_legs(sess, host.id)
    out = []
    for net in sess.scalars(select(NetworkRow).where(NetworkRow.id.in_(wanted))
                            .order_by(NetworkRow.id)):
        ip = have.get(net.id)
        if ip is None:
            ip = ipam.allocate(net.subnet, net.gateway, ledger.used_ips(sess, net.id))
            ledger.reserve_entrance_leg(sess, net.id, ip, host.id)
        prefix = net.subnet.split("/")[1]
        out.append(Leg(network=net.id, bridge=net.bridge, address=f"{ip}/{prefix}"))
    return out
