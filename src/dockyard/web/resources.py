"""/networks, /volumes, /images, /snapshots, /events, /alerts: list pages, each a table
filtered and sorted by its query string (`tables.py`), scoped as the /v1 list of the same
thing (`routers/networks.py`, `volumes.py`, `images.py`, `snapshots.py`, `cluster.py`'s
events, `alerts.py`): a member sees its project's (and the shared networks and images), an
admin everything the API shows an admin."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from dockyard.model.units import format_size
from dockyard.server import image_access, snapshots
from dockyard.server.alerts.records import alert_model, rule_model
from dockyard.store import alerts, events, networks, records, volumes
from dockyard.web.base import PageRoute, Visit, render, visit
from dockyard.web.tables import Cell, Row, Table, row

router = APIRouter(route_class=PageRoute, include_in_schema=False)

ALL = 1_000_000  # a page size that is every row (these lists are small)
EVENTS_SHOWN = 500
ALERTS_SHOWN = 500


def _when(value: Any) -> Cell:
    return Cell(value.strftime("%Y-%m-%d %H:%M:%S") if value else "", value)


def _size(value: int | None) -> Cell:
    return Cell(format_size(value) if value is not None else "", value)


def listing(request: Request, seen: Visit, title: str, tables: list[Table],
            titles: list[str] | None = None, hint: str = "") -> Response:
    return render(request, "listing.html", {"title": title, "tables": tables,
                                            "table_titles": titles, "hint": hint}, seen=seen)


NETWORKS = ("Name", "Project", "Subnet", "Gateway", "Mode", "Shared", "Bridge", "Instances",
            "Created")


@router.get("/networks")
def network_page(request: Request, seen: Visit = Depends(visit)) -> Response:
    with seen.ctx.db.read() as sess:
        rows, _ = networks.page(sess, "", ALL,
                                visible_to=None if seen.caller.is_admin else seen.caller.project)
        items = [records.network_model(sess, r) for r in rows]
    lines = [row(None, n.name, n.project, n.subnet, n.gateway,
                 n.mode.value + (f" vlan {n.vlan}" if n.vlan is not None else ""),
                 "yes" if n.shared else "no", n.bridge, Cell(str(n.instances), n.instances),
                 _when(n.created_at)) for n in items]
    return listing(request, seen, "Networks",
                   [Table.of("Networks", NETWORKS, lines, request.query_params)])


VOLUMES = ("Name", "Host", "Attached to", "Docker volume", "Created")


@router.get("/volumes")
def volume_page(request: Request, seen: Visit = Depends(visit)) -> Response:
    project = seen.caller.project
    with seen.ctx.db.read() as sess:
        rows, _ = volumes.page(sess, project, "", ALL)
        users = records.volume_users(sess, project)
        items = [records.volume_model(sess, r, users) for r in rows]
    lines = [row(None, v.name, v.host or "", ", ".join(v.attached_to), v.docker_name,
                 _when(v.created_at)) for v in items]
    return listing(request, seen, "Volumes",
                   [Table.of(f"Volumes of project {seen.project_name}", VOLUMES, lines,
                             request.query_params)])


IMAGES = ("Name", "Tag", "Reference", "Size")


def _images(seen: Visit) -> list[Row]:
    """The registry's images the caller may read (as `GET /v1/images`, without asking each
    host which it holds: that is `dockyard image list`'s extra column)."""
    with seen.ctx.db.read() as sess:
        names = image_access.project_names(sess)
    readable = [i for i in seen.ctx.registry.images()
                if image_access.can_read(seen.caller, image_access.classify(i.name, names))]
    return [row(None, i.name, i.tag, i.ref, _size(i.size)) for i in readable]


@router.get("/images")
async def image_page(request: Request, seen: Visit = Depends(visit)) -> Response:
    lines = await run_in_threadpool(_images, seen)
    return listing(request, seen, "Images",
                   [Table.of("Images in Dockyard's registry", IMAGES, lines,
                             request.query_params)],
                   hint="Launch one from the instances page; push one with "
                        "dockyard image push.")


SNAPSHOTS = ("Name", "Instance", "Image", "Size", "Created")


@router.get("/snapshots")
def snapshot_page(request: Request, seen: Visit = Depends(visit)) -> Response:
    items = snapshots.list_(seen.ctx, seen.caller.project, None)
    lines = [row(None, s.name, s.instance, s.image, _size(s.size), _when(s.created_at))
             for s in items]
    return listing(request, seen, "Snapshots",
                   [Table.of(f"Snapshots of project {seen.project_name}", SNAPSHOTS, lines,
                             request.query_params)])


EVENTS = ("Time", "Kind", "Instance", "Host", "Project", "Message")


@router.get("/events")
def event_page(request: Request, seen: Visit = Depends(visit)) -> Response:
    with seen.ctx.db.read() as sess:
        items = [records.event_model(sess, r)
                 for r in events.latest(sess, EVENTS_SHOWN, project_id=seen.scope)]
    lines = [row(None, _when(e.time), e.kind, e.instance_name or "", e.host or "",
                 e.project or "", e.message) for e in items]
    return listing(request, seen, "Events",
                   [Table.of(f"The newest {EVENTS_SHOWN} events at most", EVENTS, lines,
                             request.query_params)])


ALERTS = ("Rule", "State", "Subject", "Value", "Threshold", "Started", "Resolved")
RULES = ("Name", "Kind", "Threshold", "For (s)", "Project", "Enabled", "Built in")
PAGE_COLUMNS = tuple(dict.fromkeys(ALERTS + RULES))


@router.get("/alerts")
def alert_page(request: Request, seen: Visit = Depends(visit)) -> Response:
    with seen.ctx.db.read() as sess:
        rows, _ = alerts.alerts_page(sess, 0, ALERTS_SHOWN, None, seen.scope)
        fired = [alert_model(sess, r) for r in rows]
        rules = [rule_model(sess, r) for r in alerts.rules(sess, seen.scope)]
    alert_lines = [row(None, a.rule, a.state.value, f"{a.subject_kind} {a.subject_name}",
                       Cell("" if a.value is None else f"{a.value:g}", a.value),
                       Cell(f"{a.threshold:g}", a.threshold), _when(a.started_at),
                       _when(a.resolved_at)) for a in fired]
    rule_lines = [row(None, r.name, r.kind.value, Cell(f"{r.threshold:g}", r.threshold),
                      Cell(f"{r.for_seconds:g}", r.for_seconds), r.project or "(all)",
                      "yes" if r.enabled else "no", "yes" if r.builtin else "no")
                  for r in rules]
    params = request.query_params
    return listing(request, seen, "Alerts and rules",
                   [Table.of("Alerts, firing and resolved", ALERTS, alert_lines, params,
                             PAGE_COLUMNS),
                    Table.of("Alert rules", RULES, rule_lines, params, PAGE_COLUMNS)],
                   titles=["Alerts", "Rules"])
