"""/v1/networks: Linux-bridge segments with a subnet and a gateway on the bridge, no NAT.

A network belongs to the project of the admin who created it. Members see and launch on their
project's networks and the shared ones (`default` is always shared); others answer 404.
Only admins create or delete networks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard import ipam
from dockyard.errors import Conflict
from dockyard.model.ids import bridge_name, new_id
from dockyard.model.network import VLAN_MAX, VLAN_MIN, Network, NetworkCreate
from dockyard.server import auth
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import meta, records, revision
from dockyard.store.tables import HostRow, InstanceRow, NetworkRow

router = APIRouter(prefix="/v1/networks", tags=["networks"])
DEFAULT_NETWORK = "default"
_AUTO_VLAN = 1000


def _check_routes(sess: Session, subnet: str, own_bridges: set[str]) -> None:
    """A subnet overlapping a route of any host would break that host's own traffic."""
    for host in sess.scalars(select(HostRow)):
        routes = [r["dst"] for r in host.inventory.get("routes", [])
                  if r.get("dev") not in own_bridges]
        ipam.validate_subnet_free(subnet, routes)


def _vlan(sess: Session, wanted: int | None) -> int:
    """The network's tag on the uplink trunk: `wanted` if free, else the lowest free one.

    Tags are unique across all networks (UNIQUE in the store): one tag = one L2 segment."""
    used = {v for v in sess.scalars(select(NetworkRow.vlan)) if v is not None}
    if wanted is not None:
        if wanted in used:
            raise Conflict(f"VLAN {wanted} is already used by another network")
        return wanted
    # automatic tags start at 1000: the low ones are left for operators to choose
    for vlan in [*range(_AUTO_VLAN, VLAN_MAX + 1), *range(VLAN_MIN, _AUTO_VLAN)]:
        if vlan not in used:
            return vlan
    raise Conflict("no free VLAN left for a new network")


def create_network(ctx: ServerContext, project_id: str, spec: NetworkCreate) -> Network:
    problem = spec.gateway_problem()
    if problem:
        raise Conflict(problem)
    with ctx.db.session() as sess:
        if sess.scalar(select(NetworkRow.id).where(NetworkRow.name == spec.name)):
            raise Conflict(f"a network named {spec.name!r} already exists")
        existing = list(sess.scalars(select(NetworkRow)))
        for net in existing:
            if ipam.overlaps(net.subnet, spec.subnet):
                raise Conflict(f"subnet {spec.subnet} overlaps network {net.name} ({net.subnet})")
        _check_routes(sess, spec.subnet, {n.bridge for n in existing})
        network_id = new_id()
        rev = revision.bump(sess)
        assert spec.gateway is not None
        row = NetworkRow(id=network_id, name=spec.name, project_id=project_id,
                         subnet=spec.subnet, gateway=spec.gateway, dns=spec.dns,
                         mode=spec.mode.value, vlan=_vlan(sess, spec.vlan),
                         shared=spec.shared or spec.name == DEFAULT_NETWORK, nat=spec.nat,
                         bridge=bridge_name(network_id), revision=rev)
        sess.add(row)
        meta.put(sess, meta.NETWORKS_REVISION, str(rev))
        sess.flush()
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
        query = select(NetworkRow).where(NetworkRow.name > after)
        if not caller.is_admin:
            query = query.where(NetworkRow.shared | (NetworkRow.project_id == caller.project_id))
        rows = list(sess.scalars(query.order_by(NetworkRow.name).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
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
        used = sess.scalar(select(func.count()).select_from(InstanceRow)
                           .where(InstanceRow.network_id == row.id)) or 0
        if used:
            raise Conflict(f"network {row.name} is used by {used} instance(s)")
        sess.delete(row)
        meta.put(sess, meta.NETWORKS_REVISION, str(revision.bump(sess)))
    ctx.notifier.bump()
