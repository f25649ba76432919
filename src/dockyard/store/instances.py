"""Instance rows: pages, lookups by id and host, the instances an image is used by.
(Lookups by user reference and row → API model: `records.py`; the ledger: `ledger.py`.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.orm import Session

from dockyard.model.instance import DesiredState
from dockyard.store import ledger, rows
from dockyard.store.tables import HostRow, InstanceRow


def get(sess: Session, instance_id: str) -> InstanceRow | None:
    return sess.get(InstanceRow, instance_id)


def page(sess: Session, project_id: str, after: str,
         limit: int) -> tuple[list[InstanceRow], bool]:
    """The project's instances named after `after`, by name; the bool: more follow."""
    return rows.by_name(sess, InstanceRow, project_id, after, limit)


def names(sess: Session, project_id: str) -> list[tuple[str, str]]:
    """(id, name) of the project's instances, by name."""
    return list(sess.execute(select(InstanceRow.id, InstanceRow.name)
                             .where(InstanceRow.project_id == project_id)
                             .order_by(InstanceRow.name)).tuples())


def on_host(sess: Session, host_id: str) -> list[InstanceRow]:
    return list(sess.scalars(select(InstanceRow).where(InstanceRow.host_id == host_id)))


def all_by_name(sess: Session) -> list[InstanceRow]:
    return list(sess.scalars(select(InstanceRow).order_by(InstanceRow.name)))


def with_ids(sess: Session, ids: list[str], project_id: str | None = None) -> list[InstanceRow]:
    """The instances among `ids` (of one project when given)."""
    query = select(InstanceRow).where(InstanceRow.id.in_(ids))
    if project_id is not None:
        query = query.where(InstanceRow.project_id == project_id)
    return list(sess.scalars(query))


def using_image(sess: Session, refs: list[str]) -> list[str]:
    """Names of the instances (of any project) whose image is one of `refs`."""
    return list(sess.scalars(select(InstanceRow.name).where(InstanceRow.image.in_(refs))))


def host_and_changes(sess: Session, host_name: str, since: int | None
                     ) -> tuple[tuple[str, str, datetime | None], list[InstanceRow]] | None:
    """The host named `host_name` ((id, stored state, last heartbeat), three columns) and its
    instances whose desired-state revision is past `since` (all with None), in one query (a
    watch reads both); None if there is no such host."""
    joined = InstanceRow.host_id == HostRow.id
    if since is not None:
        joined = and_(joined, InstanceRow.revision > since)
    found = sess.execute(select(HostRow.id, HostRow.state, HostRow.last_heartbeat, InstanceRow)
                         .outerjoin(InstanceRow, joined).where(HostRow.name == host_name)).all()
    if not found:
        return None
    host_id, state, last_heartbeat, _ = found[0]
    return (host_id, state, last_heartbeat), [row[3] for row in found if row[3] is not None]


def newest_per_host(sess: Session, after: int) -> dict[str, int]:
    """host name -> the newest desired-state revision of its instances changed after `after`
    (the index on `revision` keeps it to the changed rows)."""
    query = (select(HostRow.name, func.max(InstanceRow.revision))
             .join(HostRow, HostRow.id == InstanceRow.host_id)
             .where(InstanceRow.revision > after).group_by(HostRow.name))
    return {name: int(rev) for name, rev in sess.execute(query).tuples()}


def ids_on_host(sess: Session, host_id: str) -> set[str]:
    return set(sess.scalars(select(InstanceRow.id).where(InstanceRow.host_id == host_id)))


def peers(sess: Session) -> list[tuple[str, str, str, str]]:
    """(network id, ip, hostname, name) of every instance not being deleted, by ip: one
    query for the /etc/hosts of every network."""
    return list(sess.execute(select(InstanceRow.network_id, InstanceRow.ip,
                                    InstanceRow.hostname, InstanceRow.name)
                             .where(InstanceRow.desired_state != DesiredState.deleted)
                             .order_by(InstanceRow.ip)).tuples())


def name_taken(sess: Session, project_id: str, name: str, freeing: bool = True) -> bool:
    """Whether an instance of the project holds `name`; `freeing=False`: one that is not
    being deleted (a deleted instance holds its name until its agent removed it)."""
    query = select(InstanceRow.id).where(InstanceRow.project_id == project_id,
                                         InstanceRow.name == name)
    if not freeing:
        query = query.where(InstanceRow.desired_state != DesiredState.deleted)
    return sess.scalar(query) is not None


def live_ids_on_host(sess: Session, host_id: str) -> list[str]:
    """Ids of the host's instances not being deleted."""
    return list(sess.scalars(select(InstanceRow.id).where(
        InstanceRow.host_id == host_id, InstanceRow.desired_state != DesiredState.deleted)))


def placed(sess: Session,
           hosts: set[str] | None = None) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(host id, limits, options) of every instance on a host (or on one of `hosts`): what
    the scheduler's view sums per host."""
    rows = ledger.core_connection(sess).execute(
        _PLACED if hosts is None else _PLACED_ON, {} if hosts is None else {"hosts": list(hosts)})
    return list(rows.tuples())


_PLACED = (select(InstanceRow.host_id, InstanceRow.limits, InstanceRow.options)
           .where(InstanceRow.host_id.is_not(None)))
_PLACED_ON = _PLACED.where(InstanceRow.host_id.in_(bindparam("hosts", expanding=True)))
