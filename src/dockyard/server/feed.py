"""The agent feed: register, heartbeat, watch desired state (long poll), report observed state.

Watch: the agent sends the highest revision it has applied; the server answers with every
instance of the host whose revision is newer, at once if there are any, else as soon as a
writer bumps the notifier, else empty after `timeout` seconds. No polling interval sits on
the create path: the create's commit wakes the watch directly.

Peers (/etc/hosts): an agent that sends `peers=TOKEN` (the `peers_token` of its last reply,
"" at first) gets each network's peers as the changes since that token (`peers.py`: the
server's journal, read from the store once per network change, not once per watch), and the
instances' own network without peers; an unusable token gets whole lists (the resync path).
Without `peers=` every list is whole, in the instances too (agents before the deltas).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from dockyard import faults, tls
from dockyard.errors import InvalidRequest, NotFound
from dockyard.model.agent import (
    AgentEvent,
    DesiredInstance,
    DesiredNetwork,
    Heartbeat,
    ObservedState,
    Peer,
    Registration,
    RegistrationReply,
    WatchReply,
)
from dockyard.model.instance import DesiredState, InstanceType
from dockyard.model.stats import StatsReport
from dockyard.server import auth
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.server.hosts import touch, watch_timeout
from dockyard.server.peers import PeerMap
from dockyard.server.placement import prefixlen
from dockyard.server.reports import apply_report
from dockyard.server.wakeups import Decision
from dockyard.store import hosts, meta, networks, projects, records, revision, stacks, stats
from dockyard.store import instances as instance_rows
from dockyard.store.events import record as record_event
from dockyard.store.tables import HostRow, InstanceRow, NetworkRow


async def _count(request: Request, caller: Caller = Depends(auth.host),
                 ctx: ServerContext = Depends(auth.server_context)) -> None:
    route = request.scope.get("route")
    ctx.feed.count(caller.host_name or "", getattr(route, "name", "") or request.url.path)


router = APIRouter(prefix="/v1/agent", tags=["agent"], dependencies=[Depends(_count)])


def _host(sess: Session, caller: Caller) -> HostRow:
    return _host_named(sess, caller.host_name or "")


def _host_named(sess: Session, host_name: str) -> HostRow:
    row = hosts.by_name(sess, host_name)
    if row is None:
        raise NotFound(f"host {host_name} has not registered")
    return row


@router.post("/register", response_model=RegistrationReply)
def register(body: Registration, caller: Caller = Depends(auth.host),
             ctx: ServerContext = Depends(auth.context)) -> RegistrationReply:
    with ctx.db.session() as sess:
        row = hosts.registering(sess, caller.host_name or body.name)
        was_up = row.last_heartbeat is not None
        came_back = row.state == "down"
        row.api_url, row.api_secret = body.api_url, body.api_secret
        row.inventory = {**body.inventory.model_dump(), "labels": dict(body.labels)}
        row.reserved_cores = list(body.inventory.reserved_cores)
        row.last_heartbeat = datetime.now(UTC)
        row.state = "up"
        row.version += 1
        record_event(sess, None, "host_registered",
                     f"agent {'re-' if was_up else ''}registered at {body.api_url}", row.name)
        if came_back:
            record_event(sess, None, "host_up", "the agent registered again", row.name)
        certificate = _certificate(ctx, body, row.name)
        reply = RegistrationReply(host_id=row.id, cluster=meta.cluster_id(sess),
                                  heartbeat_interval=ctx.settings.heartbeat_interval,
                                  host_path_root=ctx.settings.allowed_host_root(),
                                  registry=ctx.registry.address,
                                  registry_login=ctx.settings.registry_managed,
                                  watch_timeout=watch_timeout(ctx.settings),
                                  certificate=certificate)
    ctx.liveness.wrote(row.name, body.inventory.model_dump())
    ctx.notifier.bump()
    return reply


def _certificate(ctx: ServerContext, body: Registration, host_name: str) -> str:
    """The agent API's certificate, for the host of the URL it registers and its name."""
    if not body.csr:
        return ""
    if ctx.settings.tls_dir is None:
        raise InvalidRequest("this server does not run TLS; register without a csr")
    address = urlsplit(body.api_url).hostname or ""
    return tls.sign_csr(tls.TlsFiles(ctx.settings.tls_dir), body.csr, f"dockyard-agent-{host_name}",
                        [address, host_name])


@router.post("/heartbeat", status_code=204)
async def heartbeat(body: Heartbeat, caller: Caller = Depends(auth.host),
                    ctx: ServerContext = Depends(auth.server_context)) -> None:
    """Noted in memory when the inventory is the one this process last wrote and the host
    was heard from lately (`liveness.py`: written with the others within a second); else
    written now, in a worker thread."""
    host, inventory, live = caller.host_name or "", body.inventory.model_dump(), ctx.liveness
    if live.inventory_known(host, inventory) and \
            not live.due_now(host, ctx.settings.heartbeat_timeout):
        if live.note(host) and await run_in_threadpool(live.flush, ctx.db):
            ctx.notifier.bump()  # a host came back: wakes `events --follow`
        return
    await run_in_threadpool(_write_heartbeat, ctx, host, inventory)


def _write_heartbeat(ctx: ServerContext, host_name: str, inventory: dict[str, object]) -> None:
    with ctx.db.session() as sess:
        row = _host_named(sess, host_name)
        row.inventory = {**inventory, "labels": row.inventory.get("labels", {})}
        row.last_heartbeat = datetime.now(UTC)
        came_back = row.state == "down"
        row.state = "up"
        if came_back:
            record_event(sess, None, "host_up", "heartbeats are back", row.name)
    ctx.liveness.wrote(host_name, inventory)
    if came_back:
        ctx.notifier.bump()  # wakes `events --follow`


def desired_network(row: NetworkRow, peers: list[Peer] | None = None) -> DesiredNetwork:
    """A network as an agent receives it (with `peers`: its /etc/hosts entries)."""
    return DesiredNetwork(id=row.id, name=row.name, bridge=row.bridge, subnet=row.subnet,
                          gateway=row.gateway, mode=row.mode, vlan=row.vlan, nat=row.nat,
                          peers=peers or [])


def peer_map(sess: Session) -> PeerMap:
    """network id -> ip -> its instance (not being deleted), for /etc/hosts; one query."""
    out: PeerMap = {}
    replicas = stacks.memberships(sess)  # stack replicas: their service name in the stack
    for network_id, ip, hostname, name in instance_rows.peers(sess):
        stack, service = replicas.get((network_id, ip), (None, None))
        out.setdefault(network_id, {})[ip] = Peer(ip=ip, hostname=hostname, name=name,
                                                  stack=stack, service=service)
    return out


def desired_instance(sess: Session, row: InstanceRow, net: DesiredNetwork,
                     dns: list[str], subnet: str) -> DesiredInstance:
    """The desired state of instance `row` as an agent receives it, on network `net`."""
    project = projects.get(sess, row.project_id)
    return DesiredInstance(
        id=row.id, name=row.name, project=project.name if project else row.project_id,
        generation=row.generation, desired_state=DesiredState(row.desired_state),
        restart_serial=row.restart_serial, image=row.image, hostname=row.hostname,
        network=net, ip=row.ip, prefixlen=prefixlen(subnet), mac=row.mac,
        dns=dns, limits=records.effective_limits(sess, row),
        volumes=records.docker_volumes(sess, row), env=dict(row.env),
        lxcfs=bool(row.options.get("lxcfs", True)),
        ssh_keys=list(row.options.get("ssh_keys", [])),
        cap_add=list(row.options.get("cap_add", [])),
        no_new_privileges=bool(row.options.get("no_new_privileges", True)),
        healthcheck=row.options.get("healthcheck"),
        command=row.options.get("command"), entrypoint=row.options.get("entrypoint"),
        revision=row.revision, creating=row.state == "creating",
        type=InstanceType(row.type), disk_bytes=row.options.get("disk_bytes"))


def _changes(ctx: ServerContext, host_name: str, since: int, full: bool,
             peers_token: str | None) -> WatchReply:
    """The changes since `since` (or everything); reading them is the host's heartbeat.
    `peers_token`: the agent's peer state (None: it takes whole lists only).

    A read-only transaction: every change wakes every watch, and a write per wake-up would
    queue all of them on the write lock; the heartbeat is noted in memory and written in
    batches (`liveness.py`), at once only when the host is stored down or was silent."""
    with ctx.db.read() as sess:
        # the revisions first: on PostgreSQL (read committed) each statement sees the commits
        # made before it, so instances read after the revision miss none at or below it
        current, networks_revision = revision.current_and_networks(sess)
        ctx.peers.refresh(networks_revision, lambda: peer_map(sess))  # read after: peers.py
        found = instance_rows.host_and_changes(sess, host_name, None if full else since)
        if found is None:
            raise NotFound(f"host {host_name} has not registered")
        (_, state, last_heartbeat), changed = found
        down = state != "up" or last_heartbeat is None
        reply = _read_changes(ctx, current, networks_revision, changed, since, full,
                              peers_token, sess)
    live = ctx.liveness
    if down or live.due_now(host_name, ctx.settings.heartbeat_timeout):
        with ctx.db.session() as sess:
            if touch(sess, _host_named(sess, host_name)):
                ctx.notifier.bump()  # wakes `events --follow`
        live.wrote(host_name)
    elif live.note(host_name) and live.flush(ctx.db):
        ctx.notifier.bump()
    return reply


def _read_changes(ctx: ServerContext, current: int, networks_revision: int,
                  changed: list[InstanceRow], since: int, full: bool, peers_token: str | None,
                  sess: Session) -> WatchReply:
    """The reply from what `_changes` read: the revisions, the host's `changed` instances."""
    state = ctx.peers.since(None if full else peers_token)
    net_changed = full or networks_revision > since or (
        peers_token is not None and state.token != peers_token)
    if not changed and not net_changed:  # the idle watch: nothing to build
        return WatchReply(revision=current, full=full, instances=[], networks=[],
                          peers_token="" if peers_token is None else state.token,
                          peers_delta=peers_token is not None and not state.full)
    rows = ctx.networks.rows(networks_revision, lambda: networks.all_networks(sess))
    whole = peers_token is None  # an agent before the deltas: whole lists, its instances too
    nets = ctx.networks.part(networks_revision, rows, state, peers_token) \
        if net_changed or whole else []
    own = {n.id: n for n in nets} if whole else rows.bare
    instances = [desired_instance(sess, row, own[row.network_id], rows.dns[row.network_id],
                                  rows.subnet[row.network_id])
                 for row in changed]
    return WatchReply(revision=current, full=full, instances=instances,
                      networks=nets if net_changed else [],
                      peers_token="" if peers_token is None else state.token,
                      peers_delta=peers_token is not None and not state.full)


@router.get("/watch", response_model=WatchReply)
async def watch(since: int = Query(0, ge=0), full: bool = False,
                timeout: float = Query(25.0, ge=0, le=300),
                peers: str | None = Query(None, max_length=64, description="the "
                                          "`peers_token` of the last reply (\"\" at first): "
                                          "peers come as deltas"),
                caller: Caller = Depends(auth.host),
                ctx: ServerContext = Depends(auth.server_context)) -> WatchReply:
    """Held up to min(`timeout`, the server's watch timeout) unless something changed after
    `since`. A resync (`full`) is held too, unless `since` is 0 (the agent knows nothing)."""
    assert caller.host_name is not None
    host = caller.host_name
    token = ctx.notifier.token()
    reply = await _reply(ctx, host, since, False, peers)
    answer_at = None
    if reply.networks and not reply.instances and since and not full and timeout:
        answer_at = ctx.pacer.due(host)  # peer-only: no sooner than the pacer allows
        if answer_at <= time.monotonic():
            answer_at = None
    if answer_at is not None or not (reply.instances or reply.networks or timeout == 0
                                     or (full and since == 0)):
        ctx.pacer.held(1)
        try:
            woken = await _hold(ctx, host, since, token,
                                min(timeout, watch_timeout(ctx.settings)), answer_at)
        finally:
            ctx.pacer.held(-1)
        if woken:
            reply = await _reply(ctx, host, since, False, peers)
        elif ctx.liveness.note(host) and await run_in_threadpool(ctx.liveness.flush, ctx.db):
            ctx.notifier.bump()  # timed out, nothing of its own: the first read stands
    if full:
        reply = await _reply(ctx, host, since, True, peers)
    ctx.pacer.answered(host)
    return reply


async def _reply(ctx: ServerContext, host: str, since: int, full: bool,
                 peers: str | None) -> WatchReply:
    """`_changes` in a worker thread of the watches' own limiter (`ctx.watch_threads`)."""
    return await to_thread.run_sync(_changes, ctx, host, since, full, peers,
                                    limiter=ctx.watch_threads)


async def _hold(ctx: ServerContext, host: str, since: int, token: asyncio.Event, limit: float,
                answer_at: float | None) -> bool:
    """Until the host's instances changed after `since` (at once), its networks or peers did
    (at the pacer's time), `limit` seconds passed or the server stops (`wakeups.py`). False
    when only the time ran out and no change concerned the host (every change since the
    token was decided by `Snapshot.decide`): the read made before the hold still holds."""
    deadline = time.monotonic() + limit
    while not ctx.notifier.closing:
        until = deadline if answer_at is None else min(deadline, answer_at)
        if time.monotonic() >= until:
            return answer_at is not None
        await ctx.notifier.wait(token, until - time.monotonic())
        if not token.is_set():
            continue
        snap = await ctx.wakeups.current(ctx)
        token = snap.taken
        decision = snap.decide(host, since)
        if decision is Decision.now:
            return True
        if decision is Decision.batch and answer_at is None:
            answer_at = ctx.pacer.due(host)
    return True


@router.post("/instances/{instance_id}/report", status_code=204)
def report(instance_id: str, body: ObservedState, caller: Caller = Depends(auth.host),
           ctx: ServerContext = Depends(auth.context)) -> None:
    faults.point("server.report.before_apply")

    def work(sess: Session) -> None:
        host = _host(sess, caller)
        row = instance_rows.get(sess, instance_id)
        if row is None or row.host_id != host.id:
            raise NotFound(f"instance {instance_id} is not on host {host.name}")
        apply_report(sess, row, body, host.name)

    ctx.db.transact(work)
    ctx.notifier.bump(instance_id)


@router.post("/events", status_code=204)
def host_event(body: AgentEvent, caller: Caller = Depends(auth.host),
               ctx: ServerContext = Depends(auth.context)) -> None:
    with ctx.db.session() as sess:
        host = _host(sess, caller)
        row = instance_rows.get(sess, body.instance_id) if body.instance_id else None
        if row is not None and row.host_id != host.id:
            row = None
        record_event(sess, row, body.kind[:32], body.message[:1000], caller.host_name)
    ctx.notifier.bump()  # wakes `events --follow`


@router.post("/stats", status_code=204)
def host_stats(body: StatsReport, caller: Caller = Depends(auth.host),
               ctx: ServerContext = Depends(auth.context)) -> None:
    """One collector pass; samples of instances not on this host are dropped."""
    with ctx.db.session() as sess:
        host = _host(sess, caller)
        mine = instance_rows.ids_on_host(sess, host.id)
        body.instances = [s for s in body.instances if s.instance_id in mine]
        stats.insert(sess, host.id, body)
        stats.compact_if_due(sess, datetime.now(UTC),
                             timedelta(seconds=ctx.settings.stats_raw_retention),
                             timedelta(seconds=ctx.settings.stats_max_age))
