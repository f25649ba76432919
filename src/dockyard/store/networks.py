"""Network rows: pages, the checks a new network must pass, creation and deletion.
(Lookups by reference and row → API model: `records.py`.)

Every change bumps the desired-state revision and stores it as `meta.NETWORKS_REVISION`
(agents re-read the networks when it moves)."""

from __future__ import annotations

from itertools import chain

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard import ipam
from dockyard.errors import Conflict
from dockyard.model.ids import bridge_name, new_id
from dockyard.model.network import VLAN_MAX, VLAN_MIN, NetworkCreate
from dockyard.store import hosts, ledger, meta, revision, rows
from dockyard.store.tables import InstanceRow, NetworkRow

DEFAULT_NETWORK = "default"  # always shared
_AUTO_VLAN = 1000


def get(sess: Session, network_id: str) -> NetworkRow | None:
    return sess.get(NetworkRow, network_id)


def ids(sess: Session) -> set[str]:
    return set(sess.scalars(select(NetworkRow.id)))


def all_networks(sess: Session) -> list[NetworkRow]:
    """Every network, in the store's order."""
    return list(sess.scalars(select(NetworkRow)))


def all_by_name(sess: Session) -> list[NetworkRow]:
    return list(sess.scalars(select(NetworkRow).order_by(NetworkRow.name)))


def page(sess: Session, after: str, limit: int,
         visible_to: str | None = None) -> tuple[list[NetworkRow], bool]:
    """Networks named after `after`, by name; with `visible_to`, only that project's and the
    shared ones. The bool says whether more follow."""
    query = select(NetworkRow).where(NetworkRow.name > after)
    if visible_to is not None:
        query = query.where(NetworkRow.shared | (NetworkRow.project_id == visible_to))
    return rows.page(sess, query.order_by(NetworkRow.name), limit)


def instance_count(sess: Session, network_id: str) -> int:
    return sess.scalar(select(func.count()).select_from(InstanceRow)
                       .where(InstanceRow.network_id == network_id)) or 0


def _check_routes(sess: Session, subnet: str, own_bridges: set[str]) -> None:
    """A subnet overlapping a route of any host would break that host's own traffic."""
    for host in hosts.all_hosts(sess):
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
    for vlan in chain(range(_AUTO_VLAN, VLAN_MAX + 1), range(VLAN_MIN, _AUTO_VLAN)):
        if vlan not in used:
            return vlan
    raise Conflict("no free VLAN left for a new network")


def create(sess: Session, project_id: str, spec: NetworkCreate) -> NetworkRow:
    """A new network of `project_id`; 409 when its name is taken, its subnet overlaps another
    network's or a host's route, or its VLAN is taken (or none is left)."""
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
    return row


def delete(sess: Session, row: NetworkRow) -> None:
    """Delete the network (the caller checked that no instance uses it) and the entrances'
    legs on it."""
    ledger.release_entrance_legs(sess, network_id=row.id)
    sess.delete(row)
    meta.put(sess, meta.NETWORKS_REVISION, str(revision.bump(sess)))
