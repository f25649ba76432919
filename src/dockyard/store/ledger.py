"""The capacity ledger: addresses per network and exclusive cores per host.

Reservations are rows guarded by UNIQUE constraints, inserted in the same transaction as the
instance they belong to, so two concurrent creates can never hold the same IP or core: the
second one fails on the constraint (translated to Conflict) and its whole transaction rolls
back. Placements also bump `hosts.version` with a compare-and-set, so a plan computed from a
stale cluster view is rejected and retried rather than over-committing memory.
"""

from __future__ import annotations

import threading
import weakref
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    String,
    bindparam,
    cast,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstanceState, ORMExecuteState, Session, SessionTransaction, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from dockyard.errors import Conflict, RetryableConflict
from dockyard.model.instance import reservations
from dockyard.store.tables import (
    CoreAllocationRow,
    HostRow,
    InstanceRow,
    IpAllocationRow,
    Meta,
    NetworkRow,
)


def used_ips(sess: Session, network_id: str) -> set[str]:
    rows = sess.scalars(select(IpAllocationRow.ip).where(IpAllocationRow.network_id == network_id))
    return set(rows)


def taken_cores(sess: Session, host_id: str) -> dict[int, str]:
    rows = sess.execute(select(CoreAllocationRow.core, CoreAllocationRow.instance_id)
                        .where(CoreAllocationRow.host_id == host_id))
    return {core: inst for core, inst in rows}


def memory_reserved(sess: Session, host_id: str) -> int:
    rows = sess.scalars(select(InstanceRow.limits).where(InstanceRow.host_id == host_id))
    return sum(reservations(limits).memory_bytes for limits in rows)


def instance_count(sess: Session, host_id: str) -> int:
    return int(sess.scalar(select(func.count()).select_from(InstanceRow)
                           .where(InstanceRow.host_id == host_id)) or 0)


_CORES = select(CoreAllocationRow.host_id, CoreAllocationRow.core)
_CORES_ON = _CORES.where(CoreAllocationRow.host_id.in_(bindparam("hosts", expanding=True)))


def cores_by_host(sess: Session, hosts: set[str] | None = None) -> dict[str, list[int]]:
    """host id -> its exclusive cores taken, for every host or only `hosts`."""
    taken: dict[str, list[int]] = {}
    rows = core_connection(sess).execute(
        _CORES if hosts is None else _CORES_ON, {} if hosts is None else {"hosts": list(hosts)})
    for host_id, core in rows:
        taken.setdefault(host_id, []).append(int(core))
    return taken


def core_connection(sess: Session) -> Connection:
    """The session's connection for a Core statement on the placement path, after the flush
    an ORM statement would do first (autoflush). A Core statement skips the ORM's per-statement
    work (a third to half of a small statement's cost) and the session's `do_orm_execute`
    listeners: a write sent this way records the hosts it touches itself (`_touch`). The hot
    statements are built once, with bound parameters (building one and computing its cache
    key costs as much as running it on SQLite)."""
    sess.flush()
    return sess.connection()


def reserve_ip(sess: Session, network_id: str, ip: str, instance_id: str,
               chosen: bool = True) -> None:
    """`chosen=False`: the address was picked from the free ones, so losing it to a concurrent
    placement (possible on PostgreSQL, where placements on different hosts run in parallel)
    is retried with another address, not refused."""
    try:
        with sess.begin_nested():
            sess.add(IpAllocationRow(network_id=network_id, ip=ip, instance_id=instance_id))
    except IntegrityError as exc:
        if not chosen:
            raise RetryableConflict(f"address {ip} was taken concurrently; retry") from exc
        raise Conflict(f"address {ip} is already in use") from exc


def reserve_cores(sess: Session, host_id: str, cores: list[int], instance_id: str) -> None:
    """The exclusive `cores` on `host_id` held by `instance_id` (none: nothing to do), in a
    savepoint: RetryableConflict when a concurrent placement took one first."""
    if not cores:
        return
    try:
        with sess.begin_nested():
            core_connection(sess).execute(_INSERT_CORE, [
                {"host_id": host_id, "core": core, "instance_id": instance_id}
                for core in cores])
    except IntegrityError as exc:
        raise RetryableConflict(f"cores {cores} were taken concurrently; retry") from exc
    _touch(sess, {host_id})


_INSERT_CORE = insert(CoreAllocationRow)
_CAS = (update(HostRow)
        .where(HostRow.id == bindparam("host"), HostRow.version == bindparam("seen"))
        .values(version=bindparam("seen") + 1))


def commit_placement(sess: Session, host_id: str, seen_version: int) -> None:
    """Compare-and-set on the host's version: fails if another placement landed meanwhile.
    (A Core statement; the host's row, if this session holds it, gets the new version.)"""
    result = core_connection(sess).execute(_CAS, {"host": host_id, "seen": seen_version})
    if result.rowcount != 1:
        _distrust(sess)  # whatever cluster view the caller had is stale: rebuild it
        raise RetryableConflict("host capacity changed during placement; retry")
    held = sess.identity_map.get(identity_key(HostRow, host_id))
    if held is not None:
        set_committed_value(held, "version", seen_version + 1)
    _touch(sess, {host_id})


def release_cores(sess: Session, instance_id: str) -> None:
    sess.execute(delete(CoreAllocationRow).where(CoreAllocationRow.instance_id == instance_id))


def release_cores_on(sess: Session, instance_id: str, host_id: str) -> None:
    """The instance's cores on one host given back (a move leaving it, or not going there)."""
    sess.execute(delete(CoreAllocationRow).where(CoreAllocationRow.instance_id == instance_id,
                                                 CoreAllocationRow.host_id == host_id))


ENTRANCE_OWNER = "entrance:"  # + a host id: the owner of that host's entrance legs' addresses


def entrance_legs(sess: Session, host_id: str) -> dict[str, str]:
    """network id → the address of `host_id`'s entrance leg on it (agent/entrance.py)."""
    rows = sess.execute(select(IpAllocationRow.network_id, IpAllocationRow.ip)
                        .where(IpAllocationRow.instance_id == ENTRANCE_OWNER + host_id))
    return {network_id: ip for network_id, ip in rows}


def reserve_entrance_leg(sess: Session, network_id: str, ip: str, host_id: str) -> None:
    """An address picked from the free ones for the entrance of `host_id`: RetryableConflict
    when a concurrent placement took it first."""
    reserve_ip(sess, network_id, ip, ENTRANCE_OWNER + host_id, chosen=False)


def release_entrance_legs(sess: Session, *, host_id: str | None = None,
                          network_id: str | None = None) -> None:
    """The entrance legs of a host going away, or on a network going away."""
    query = delete(IpAllocationRow).where(IpAllocationRow.instance_id.startswith(ENTRANCE_OWNER))
    if host_id is not None:
        query = query.where(IpAllocationRow.instance_id == ENTRANCE_OWNER + host_id)
    if network_id is not None:
        query = query.where(IpAllocationRow.network_id == network_id)
    sess.execute(query.execution_options(synchronize_session=False))


def release_instance(sess: Session, instance_id: str) -> None:
    """Give back everything the instance held (idempotent)."""
    sess.execute(delete(IpAllocationRow).where(IpAllocationRow.instance_id == instance_id))
    release_cores(sess, instance_id)


# -- the capacity stamp: what the server's placement cache keys on -------------------------------
#
# Every transaction that changes what the scheduler's view is built from (a host's row other
# than its heartbeat/state, an instance's host/limits/options, a core allocation, a network)
# bumps the `meta` counter CAPACITY_STAMP once, at commit, in the same transaction. After the
# commit the session publishes {stamp: hosts it touched} in a process-local journal per engine
# (None: unknown, e.g. a bulk DELETE that names no host, a host added or removed, a network).
# A cached view at stamp S is therefore current while the stamp reads S, and can be brought
# to stamp T by re-reading only the touched hosts when this process wrote every stamp in
# S+1..T; otherwise it is rebuilt. The stamp is a cache key, not a guard: the version CAS in
# `commit_placement` still rejects a plan made from a stale view.

CAPACITY_STAMP = "capacity_stamp"
_TOUCHED = "dockyard.capacity_touched"  # sess.info: set of host ids, or None (unknown)
_PENDING = "dockyard.capacity_pending"  # sess.info: the stamp this transaction wrote
_INSTANCE_FIELDS = ("host_id", "limits", "options")
_HOST_IGNORED = frozenset({"last_heartbeat", "state", "api_url", "api_secret", "version"})
_JOURNAL_SIZE = 4096
_journals: weakref.WeakKeyDictionary[Engine, dict[int, frozenset[str] | None]] = (
    weakref.WeakKeyDictionary())
_epochs: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()
_journal_lock = threading.Lock()


_STAMP = select(Meta.value).where(Meta.key == CAPACITY_STAMP)
# one statement: the increment locks the row as SELECT … FOR UPDATE would
_BUMP = (update(Meta).where(Meta.key == CAPACITY_STAMP)
         .values(value=cast(cast(Meta.value, Integer) + 1, String)).returning(Meta.value))


def capacity_stamp(sess: Session) -> int:
    value = core_connection(sess).execute(_STAMP).scalar()
    return int(value) if value is not None else 0


def cache_epoch(engine: Engine) -> int:
    """Bumped by every failed version CAS: a cache keyed on it is dropped then, so a change
    that escaped the stamp (a write outside these session events) costs one retry, not a
    stuck cache."""
    with _journal_lock:
        return _epochs.get(engine, 0)


def session_engine(sess: Session) -> Engine:
    """The engine behind a session, the same for `Database.session` and `Database.read`
    (whose engine is an OptionEngine proxying the first)."""
    bind = sess.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    while isinstance(getattr(engine, "_proxied", None), Engine):
        engine = engine._proxied  # type: ignore[attr-defined]
    return engine


def _distrust(sess: Session) -> None:
    engine = session_engine(sess)
    with _journal_lock:
        _epochs[engine] = _epochs.get(engine, 0) + 1
        _journals.pop(engine, None)


def touched_since(engine: Engine, since: int, until: int) -> set[str] | None:
    """The hosts changed by the stamps since+1..until, if this process wrote all of them and
    each named its hosts; None otherwise (rebuild)."""
    with _journal_lock:
        journal = _journals.get(engine, {})
        hosts: set[str] = set()
        for stamp in range(since + 1, until + 1):
            if stamp not in journal:
                return None
            named = journal[stamp]
            if named is None:
                return None
            hosts |= named
        return hosts


def _touch(sess: Session, hosts: set[str] | None) -> None:
    if hosts is None:
        sess.info[_TOUCHED] = None
        return
    current = sess.info.get(_TOUCHED, set())
    if current is not None:
        sess.info[_TOUCHED] = current | {h for h in hosts if h}


def _state(obj: object) -> InstanceState[Any]:
    state: InstanceState[Any] = inspect(obj)  # type: ignore[assignment]
    return state


def _changed(obj: object, fields: tuple[str, ...] | None = None) -> bool:
    state = _state(obj)
    names = fields or tuple(a.key for a in state.attrs if a.key not in _HOST_IGNORED)
    return any(state.attrs[name].history.has_changes() for name in names)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite drops the zone


def _heartbeat_went_back(row: HostRow) -> bool:
    """A heartbeat moved earlier (or cleared): the host may be down now. Heartbeats moving
    later do not bump the stamp; the placement cache re-reads liveness on its own."""
    history = _state(row).attrs["last_heartbeat"].history
    if not history.has_changes():
        return False
    new = row.last_heartbeat
    old = history.deleted[0] if history.deleted else None
    return new is None or old is None or _utc(new) < _utc(old)


def _old_value(obj: object, field: str) -> object:
    history = _state(obj).attrs[field].history
    return history.deleted[0] if history.deleted else None


def _note_flush(sess: Session, _context: Any, _instances: Any) -> None:
    for obj in sess.new | sess.deleted:
        if isinstance(obj, (HostRow, NetworkRow)):
            _touch(sess, None)
        elif isinstance(obj, (InstanceRow, CoreAllocationRow)):
            _touch(sess, {obj.host_id} if obj.host_id else set())
    for obj in sess.dirty:
        if isinstance(obj, HostRow) and (_changed(obj) or _heartbeat_went_back(obj)):
            _touch(sess, None if _changed(obj, ("name", "id")) else {obj.id})
        elif isinstance(obj, NetworkRow) and _changed(obj, ("id",)):
            _touch(sess, None)
        elif isinstance(obj, InstanceRow) and _changed(obj, _INSTANCE_FIELDS):
            old = _old_value(obj, "host_id")
            _touch(sess, {obj.host_id or "", str(old or "")})


def _note_bulk(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    cls = mapper.class_ if mapper is not None else None
    if cls is HostRow and state.is_update:
        values = {getattr(c, "key", str(c)) for c in getattr(state.statement, "_values", {})}
        if values and values <= _HOST_IGNORED:
            return  # heartbeat/state bookkeeping: not what the cluster view caches
    if cls in (HostRow, InstanceRow, CoreAllocationRow, NetworkRow):
        _touch(state.session, None)  # a bulk statement names no host: rebuild


def _bump_stamp(sess: Session) -> None:
    # SQLAlchemy sends before_commit for a SAVEPOINT's release too (`begin_nested`, as in
    # reserve_ip): the stamp row must be locked at the outermost commit only. Locked at a
    # savepoint it was held from mid-transaction on, and two servers' transactions waiting on
    # each other's rows deadlocked on PostgreSQL (test_postgres, deletes through two servers).
    if sess.in_nested_transaction():
        return
    sess.flush()
    if _TOUCHED not in sess.info or _PENDING in sess.info:
        return
    conn = sess.connection()
    value = conn.execute(_BUMP).scalar()
    if value is None:
        value = "1"
        conn.execute(insert(Meta).values(key=CAPACITY_STAMP, value=value))
    sess.info[_PENDING] = int(value)


def _publish(sess: Session) -> None:
    if sess.in_nested_transaction():  # a savepoint released: the stamp is the outer commit's
        return
    stamp, touched = sess.info.pop(_PENDING, None), sess.info.pop(_TOUCHED, set())
    if stamp is None:
        return
    engine = session_engine(sess)
    with _journal_lock:
        journal = _journals.setdefault(engine, {})
        journal[stamp] = None if touched is None else frozenset(touched)
        if len(journal) > 2 * _JOURNAL_SIZE:  # trimmed now and then, not at every commit
            for old in [s for s in journal if s <= stamp - _JOURNAL_SIZE]:
                del journal[old]


def _forget(sess: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost one ended (after_commit ran if committed)
        sess.info.pop(_PENDING, None)
        sess.info.pop(_TOUCHED, None)


def watch_capacity(writers: sessionmaker[Session]) -> None:
    """Keep the capacity stamp on the sessions that write (`Database.session`), once per
    sessionmaker. Read-only sessions (`Database.read`: token lookups, polls, lists) change no
    capacity and run none of these listeners; registered on the `Session` class they ran on
    every flush, statement and commit of every session in the process."""
    event.listen(writers, "before_flush", _note_flush)
    event.listen(writers, "do_orm_execute", _note_bulk)
    event.listen(writers, "before_commit", _bump_stamp)
    event.listen(writers, "after_commit", _publish)
    event.listen(writers, "after_transaction_end", _forget)
