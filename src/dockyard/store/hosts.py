"""Host rows: lookups, counts of what a host holds, the stored up/down flag's transitions.
(Rows → API models: `records.host_model`; the ledger's per-host sums and instance count:
`ledger.py`.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from dockyard.model.ids import new_id
from dockyard.store import ledger
from dockyard.store.tables import HostRow, VolumeRow


def get(sess: Session, host_id: str | None) -> HostRow | None:
    return sess.get(HostRow, host_id) if host_id else None


def by_name(sess: Session, name: str) -> HostRow | None:
    return sess.scalar(select(HostRow).where(HostRow.name == name))


def exists(sess: Session, name: str) -> bool:
    return sess.scalar(select(HostRow.id).where(HostRow.name == name)) is not None


def all_by_name(sess: Session) -> list[HostRow]:
    return list(sess.scalars(select(HostRow).order_by(HostRow.name)))


def among_by_name(sess: Session, ids: set[str] | None) -> list[HostRow]:
    """The hosts of `ids` (every host with None), by name."""
    query = select(HostRow).order_by(HostRow.name)
    if ids is not None:
        query = query.where(HostRow.id.in_(ids))
    return list(sess.scalars(query))


@dataclass(frozen=True)
class Capacity:
    """What the scheduler's view reads of a host's row (`capacity_of`)."""

    id: str
    name: str
    version: int
    draining: bool
    inventory: dict[str, Any]
    reserved_cores: list[Any]
    labels: dict[str, Any]
    last_heartbeat: datetime | None


_CAPACITY = select(HostRow.id, HostRow.name, HostRow.version, HostRow.draining,
                   HostRow.inventory, HostRow.reserved_cores, HostRow.labels,
                   HostRow.last_heartbeat).order_by(HostRow.name)
_CAPACITY_OF = _CAPACITY.where(HostRow.id.in_(bindparam("ids", expanding=True)))


def capacity_of(sess: Session, ids: set[str] | None) -> list[Capacity]:
    """The hosts of `ids` (every host with None), by name, as `Capacity` (columns, not ORM
    objects: read on every placement that follows another)."""
    rows = ledger.core_connection(sess).execute(
        _CAPACITY if ids is None else _CAPACITY_OF, {} if ids is None else {"ids": list(ids)})
    return [Capacity(*row) for row in rows]


def silent_since(sess: Session, cutoff: datetime) -> frozenset[str]:
    """Ids of the hosts with no heartbeat after `cutoff` (or none ever)."""
    return frozenset(sess.scalars(select(HostRow.id).where(
        or_(HostRow.last_heartbeat.is_(None), HostRow.last_heartbeat <= cutoff))))


def oldest_heartbeat_after(sess: Session, cutoff: datetime) -> datetime | None:
    """The oldest of the heartbeats later than `cutoff` (None if there is none)."""
    return sess.scalar(select(func.min(HostRow.last_heartbeat))
                       .where(HostRow.last_heartbeat > cutoff))


def all_hosts(sess: Session) -> list[HostRow]:
    """Every host, in the store's order."""
    return list(sess.scalars(select(HostRow)))


def stored_up(sess: Session) -> list[HostRow]:
    """Hosts whose stored state is `up` (the flag `set_state` moves)."""
    return list(sess.scalars(select(HostRow).where(HostRow.state == "up")))


def reachable(sess: Session) -> list[HostRow]:
    """Hosts stored `up` with an agent API to call, by name."""
    return list(sess.scalars(select(HostRow).where(HostRow.state == "up", HostRow.api_url != "")
                             .order_by(HostRow.name)))


def names_by_id(sess: Session) -> dict[str, str]:
    return {h.id: h.name for h in sess.scalars(select(HostRow))}


def add(sess: Session, name: str, labels: dict[str, str]) -> HostRow:
    """A new host row, `down` until its agent registers."""
    row = HostRow(id=new_id(), name=name, state="down", version=0, draining=False,
                  reserved_cores=[], labels=dict(labels), inventory={})
    sess.add(row)
    sess.flush()
    return row


def set_state(sess: Session, row: HostRow, old: str, new: str) -> bool:
    """Move the stored state from `old` to `new` by a conditional UPDATE; True if this call
    moved it (of concurrent callers exactly one does)."""
    done = sess.execute(update(HostRow).where(HostRow.id == row.id, HostRow.state == old)
                        .values(state=new).execution_options(synchronize_session=False))
    if getattr(done, "rowcount", 0) != 1:
        return False
    row.state = new
    return True


def volume_count(sess: Session, host_id: str) -> int:
    return sess.scalar(select(func.count()).select_from(VolumeRow)
                       .where(VolumeRow.host_id == host_id)) or 0


def touch_many(sess: Session, names: list[str], when: datetime) -> list[HostRow]:
    """Set the heartbeat of the hosts named `names` to `when` (one UPDATE; never moves one
    back); the rows among them stored `down`, to be brought back up one by one."""
    if not names:
        return []
    sess.execute(update(HostRow).where(HostRow.name.in_(names), or_(
        HostRow.last_heartbeat.is_(None), HostRow.last_heartbeat < when))
        .values(last_heartbeat=when).execution_options(synchronize_session=False))
    return list(sess.scalars(select(HostRow).where(HostRow.name.in_(names),
                                                   HostRow.state == "down")))


def delete(sess: Session, row: HostRow) -> None:
    ledger.release_entrance_legs(sess, host_id=row.id)
    sess.delete(row)


def mark_down_if_silent(sess: Session, row: HostRow, cutoff: datetime) -> bool:
    """Move an `up` host whose last heartbeat is at or before `cutoff` to `down` by a
    conditional UPDATE; True if this call moved it (of concurrent servers one does)."""
    done = sess.execute(update(HostRow).where(HostRow.id == row.id, HostRow.state == "up",
                                              HostRow.last_heartbeat <= cutoff)
                        .values(state="down").execution_options(synchronize_session=False))
    return getattr(done, "rowcount", 0) == 1


def registering(sess: Session, name: str) -> HostRow:
    """The host row an agent registers into: the one named `name`, or a new one (added, not
    flushed; the registration fills in its state, inventory and API)."""
    row = by_name(sess, name)
    if row is None:
        row = HostRow(id=new_id(), name=name, version=0, draining=False, reserved_cores=[],
                      labels={})
        sess.add(row)
    return row
