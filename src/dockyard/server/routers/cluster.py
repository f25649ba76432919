"""/v1/hosts (+ the host doctor), /v1/events, /v1/operations, /healthz, /v1/cluster/ca
(projects: projects.py)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from dockyard import tls
from dockyard.errors import NotFound
from dockyard.model.common import Operation
from dockyard.model.doctor import DoctorReport
from dockyard.model.host import ClusterCa, Host, HostAdded, HostCreate
from dockyard.model.units import MAX_AMOUNT as MAX_ID
from dockyard.server import auth, hosts
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import events, networks, operations, records
from dockyard.store import hosts as host_rows

router = APIRouter(tags=["cluster"])


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/v1/cluster/ca", response_model=ClusterCa)
def cluster_ca(ctx: ServerContext = Depends(auth.context)) -> ClusterCa:
    """The cluster CA's certificate, without a token (it is public; `dockyard login` shows
    its fingerprint before trusting it). 404 when the server runs without TLS."""
    if ctx.settings.tls_dir is None:
        raise NotFound("this server runs without TLS (--no-tls): there is no cluster CA")
    pem = tls.ca_pem(tls.TlsFiles(ctx.settings.tls_dir))
    return ClusterCa(pem=pem, fingerprint=tls.fingerprint(pem))


@router.get("/v1/hosts")
def list_hosts(_: Caller = Depends(auth.user),
               ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    with ctx.db.session() as sess:
        items = [hosts.host_view(sess, r, ctx.settings, ctx.feed).model_dump(mode="json")
                 for r in host_rows.all_by_name(sess)]
    return {"items": items, "next": None}


@router.get("/v1/hosts/{ref}", response_model=Host)
def show_host(ref: str, _: Caller = Depends(auth.user),
              ctx: ServerContext = Depends(auth.context)) -> Host:
    with ctx.db.session() as sess:
        return hosts.host_view(sess, records.host_by_ref(sess, ref), ctx.settings, ctx.feed)


@router.post("/v1/hosts", status_code=201, response_model=HostAdded)
def add_host(spec: HostCreate, _: Caller = Depends(auth.admin),
             ctx: ServerContext = Depends(auth.context)) -> HostAdded:
    """A host row (`down` until its agent registers) and its agent's token, shown once.
    Run `dockyard agent --server URL --token TOKEN --name NAME` on the host."""
    with ctx.db.session() as sess:
        return hosts.add(sess, spec, ctx.settings, ctx.feed)


def _set_draining(ctx: ServerContext, ref: str, draining: bool) -> Host:
    with ctx.db.session() as sess:
        row = hosts.set_draining(sess, ref, draining)
        view = hosts.host_view(sess, row, ctx.settings, ctx.feed)
    ctx.notifier.bump()
    return view


@router.post("/v1/hosts/{ref}/drain", response_model=Host)
def drain_host(ref: str, _: Caller = Depends(auth.admin),
               ctx: ServerContext = Depends(auth.context)) -> Host:
    """No new placements on the host; its instances stay where they are."""
    return _set_draining(ctx, ref, True)


@router.post("/v1/hosts/{ref}/undrain", response_model=Host)
def undrain_host(ref: str, _: Caller = Depends(auth.admin),
                 ctx: ServerContext = Depends(auth.context)) -> Host:
    return _set_draining(ctx, ref, False)


@router.delete("/v1/hosts/{ref}")
def remove_host(ref: str, _: Caller = Depends(auth.admin),
                ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """Forget a host and revoke its tokens; 409 while instances are placed on it."""
    with ctx.db.session() as sess:
        name = hosts.remove(sess, ref)
    ctx.notifier.bump()
    return {"name": name, "deleted": True}


@router.get("/v1/hosts/{ref}/doctor", response_model=DoctorReport)
def host_doctor(ref: str, _: Caller = Depends(auth.admin),
                ctx: ServerContext = Depends(auth.context)) -> DoctorReport:
    """Check the host's setup (storage driver, pid_max, pids controller, live-restore, lxcfs,
    each network's forwarding rule, OVS, disk, clock) and say how to fix what is wrong."""
    with ctx.db.session() as sess:
        host = records.host_by_ref(sess, ref)
        name, url, secret = host.name, host.api_url, host.api_secret
        nets = networks.all_by_name(sess)
        bridges = [n.bridge for n in nets if n.mode == "bridge"]
        ovs = any(n.mode == "ovs" for n in nets)
    return DoctorReport(host=name, checks=ctx.agents.doctor(name, url, secret, bridges, ovs))


EVENTS_RECHECK = 5.0  # a long poll re-reads this often even unwoken (writers that forget)


def _events_page(ctx: ServerContext, caller: Caller, after: int, limit: int) -> dict[str, Any]:
    with ctx.db.session() as sess:
        rows, more = events.page(sess, after, limit,
                                 project_id=None if caller.role == "admin" else caller.project)
        items = [records.event_model(sess, r).model_dump(mode="json") for r in rows]
    return {"items": items, "next": str(rows[-1].id) if more else None}


@router.get("/v1/events")
async def list_events(limit: int = Query(100, ge=1, le=1000),
                      after: int = Query(0, ge=0, le=MAX_ID),
                      wait: float = Query(0, ge=0, le=300, description=(
                          "long poll: wait up to this many seconds for an event newer than "
                          "`after`; answers as soon as one is recorded")),
                      caller: Caller = Depends(auth.user),
                      ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        token = ctx.notifier.token()  # before the read: a commit in between still wakes us
        page = await run_in_threadpool(_events_page, ctx, caller, after, limit)
        remaining = deadline - time.monotonic()
        if page["items"] or remaining <= 0 or ctx.notifier.closing:
            return page
        await ctx.notifier.wait(token, min(remaining, EVENTS_RECHECK))


@router.get("/v1/operations/{op_id}", response_model=Operation)
def show_operation(op_id: str, caller: Caller = Depends(auth.user),
                   ctx: ServerContext = Depends(auth.context)) -> Operation:
    with ctx.db.session() as sess:
        row = operations.get(sess, op_id)
        if row is None or row.project_id not in (None, caller.project_id):
            raise NotFound(f"operation {op_id} not found")
        return records.operation_model(row)
