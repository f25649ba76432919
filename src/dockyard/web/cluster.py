"""/ (overview), /hosts (+ drain, undrain: admin) and /projects (admin): what
`routers/cluster.py`, `routers/alerts.py` and `routers/projects.py` show, scoped the same way
(hosts for every user, events and alerts of the member's project, projects and tokens for
admins only)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from dockyard.errors import Forbidden, NotFound
from dockyard.model.alerts import Alert
from dockyard.model.common import Event
from dockyard.model.host import Host
from dockyard.server import hosts
from dockyard.server.alerts.records import alert_model
from dockyard.server.placement import host_is_up
from dockyard.store import alerts, events, projects, records, stats, tokens
from dockyard.store import hosts as host_rows
from dockyard.store import instances as instance_rows
from dockyard.web.base import PageRoute, Posted, Visit, admin_visit, posted, redirect, render, visit

router = APIRouter(route_class=PageRoute, include_in_schema=False)

RECENT_EVENTS = 15
ALERTS_SHOWN = 50
ALL = 1_000_000  # a page size that is every instance of a project


@dataclass(frozen=True)
class HostLine:
    host: Host
    cores_used: int  # held exclusively by instances
    cores_free: int  # neither held nor reserved for the host
    memory_used: int | None  # from the host's newest sample (None: no recent sample)


def host_lines(seen: Visit) -> list[HostLine]:
    with seen.ctx.db.read() as sess:
        views = [hosts.host_view(sess, r, seen.ctx.settings, seen.ctx.feed)
                 for r in host_rows.all_by_name(sess)]
        samples = stats.latest_host(sess)
    lines = []
    for view in views:
        used = len(view.exclusive_cores)
        reserved = len(set(view.reserved_cores) & set(view.cores))
        sample = samples.get(view.id)
        lines.append(HostLine(view, used, max(0, len(view.cores) - used - reserved),
                              sample.memory_total_bytes - sample.memory_available_bytes
                              if sample else None))
    return lines


def _events_and_alerts(seen: Visit) -> tuple[list[Event], list[Alert]]:
    with seen.ctx.db.read() as sess:
        shown = [records.event_model(sess, r)
                 for r in events.latest(sess, RECENT_EVENTS, project_id=seen.scope)]
        rows, _ = alerts.alerts_page(sess, 0, ALERTS_SHOWN, "firing", seen.scope)
        firing = [alert_model(sess, r) for r in rows]
    return shown, firing


def _all_states(seen: Visit) -> list[tuple[str, int]]:
    """Instances by state: every project's for an admin, else the project's; `unknown` while
    their host is down, as `hosts.instance_view` shows them (host health read once per
    host, not once per instance: the overview stays cheap with thousands of instances)."""
    timeout = seen.ctx.settings.heartbeat_timeout
    with seen.ctx.db.read() as sess:
        up = {h.id: host_is_up(h, timeout) for h in host_rows.all_by_name(sess)}
        rows = instance_rows.all_by_name(sess) if seen.caller.is_admin else \
            instance_rows.page(sess, seen.caller.project, "", ALL)[0]
        states = Counter("unknown" if r.host_id in up and not up[r.host_id] else r.state
                         for r in rows)
    return sorted(states.items())


@router.get("/")
def overview(request: Request, seen: Visit = Depends(visit)) -> Response:
    shown, firing = _events_and_alerts(seen)
    return render(request, "overview.html", {
        "hosts": host_lines(seen), "states": _all_states(seen), "events": shown,
        "alerts": firing}, seen=seen)


@router.get("/hosts")
def host_page(request: Request, seen: Visit = Depends(visit)) -> Response:
    return render(request, "hosts.html", {"hosts": host_lines(seen)}, seen=seen)


@router.post("/hosts/{name}/{action}")
def host_action(name: str, action: str, form: Posted = Depends(posted)) -> Response:
    """drain / undrain (admin only, as `POST /v1/hosts/{ref}/drain`)."""
    seen = form.visit
    if not seen.caller.is_admin:
        raise Forbidden("only an admin may do this")
    if action not in ("drain", "undrain"):
        raise NotFound(f"no host action {action!r} (drain, undrain)")
    with seen.ctx.db.session() as sess:
        hosts.set_draining(sess, name, action == "drain")
    seen.ctx.notifier.bump()
    return redirect("/hosts")


@router.get("/projects")
def project_page(request: Request, seen: Visit = Depends(admin_visit)) -> Response:
    with seen.ctx.db.read() as sess:
        rows = projects.listing(sess, None)
        quotas: list[Any] = [records.quota_model(sess, r) for r in rows]
        names = projects.names_by_id(sess)
        listed = [records.token_info(names, r) for r in tokens.user_tokens(sess)]
    return render(request, "projects.html", {"quotas": quotas, "tokens": listed}, seen=seen)
