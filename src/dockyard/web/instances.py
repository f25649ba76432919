"""/instances (list, launch) and /instances/{name} (detail, actions, resize, delete).

Each action calls what `routers/instances.py` calls, with the visitor's caller: launch
`powers.check_admin_powers` → `snapshots.prepare_launch` → `instances.create`; stop, start,
restart `instances.set_desired`; resize `resize.resize`; delete `instances.delete`; snapshot
and migrate the /v1 handlers themselves (`routers/snapshots.py`: `create_snapshot`,
`migrate_instance`, with its admin-only target host). Another project's instance is not
found (404), as in the API.

The logs panel reads `GET /v1/instances/{ref}/logs?tail=N` (its handler, with the visitor's
caller: the same lookup and agent call) without `follow`, and the page follows by polling it
every 2 s; a refusal (no container yet, the agent down) is said in the panel, which keeps
polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, cast
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from dockyard.errors import BackendError, DockyardError, InvalidRequest, NotFound
from dockyard.model.common import Event
from dockyard.model.instance import Instance, InstanceAction, InstanceCreate, LimitsPatch
from dockyard.model.snapshot import MigrateRequest, SnapshotCreate
from dockyard.server import hosts, instances, powers, resize
from dockyard.server.placement import host_is_up
from dockyard.server.routers.instances import instance_logs
from dockyard.server.routers.snapshots import create_snapshot, migrate_instance
from dockyard.server.snapshots import prepare_launch
from dockyard.store import events, networks, projects, records
from dockyard.store import hosts as host_rows
from dockyard.store import instances as instance_rows
from dockyard.web.base import PageRoute, Posted, Visit, invalid, posted, redirect, render, visit
from dockyard.web.charts import RANGES
from dockyard.web.tables import View

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE = 100  # instances on one page (the API's default page)
PAGE_MOST = 1000  # ?per= at most
EVENTS_SHOWN = 30
LOG_TAIL = 200  # log lines the panel shows (?tail=)
LOG_TAIL_MOST = 5000
LOG_BYTES = 512 * 1024  # of one log answer kept at most: the newest
LOG_WAIT = 10.0  # seconds for the agent's answer
ALL = 1_000_000  # a page size that is every instance of a project
COLUMNS = ("Name", "State", "Host", "IP", "Image", "Memory", "Created")  # sortable ones


@dataclass(frozen=True)
class InstancePage:
    items: list[Instance]
    view: View  # the filter words and the sort (tables.View)
    number: int  # this page, from 1
    per: int
    matched: int  # instances the filter keeps, on every page
    query: str  # the query string that shows this page again (the table's poll)

    @property
    def pages(self) -> int:
        return max(1, -(-self.matched // self.per))

    def link(self, number: int) -> str:
        return "/instances?" + _query(self.view, number, self.per)


def _query(view: View, number: int, per: int) -> str:
    values = {"q": view.q, "sort": view.sort, "desc": "1" if view.desc else "",
              "page": str(number) if number > 1 else "", "per": str(per) if per != PAGE else ""}
    return urlencode({k: v for k, v in values.items() if v})


def _number(params: QueryParams, name: str, default: int, most: int) -> int:
    text = params.get(name, "")
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise InvalidRequest(f"{name}={text!r}: a whole number from 1 to {most}")
    return int(text)


def project_instances(seen: Visit, params: QueryParams) -> InstancePage:
    """A page of the project's instances: those whose name, state, host, IP or image hold
    every word of `q`, sorted by `sort` (name by default), `per` a page (100).

    Filtering and sorting read the stored rows only (host names and health once per host);
    the full view (`hosts.instance_view`: limits with the shared cpuset) is built for the
    rows of the page alone."""
    view = View.of(params, COLUMNS)
    number = _number(params, "page", 1, ALL)
    per = _number(params, "per", PAGE, PAGE_MOST)
    timeout = seen.ctx.settings.heartbeat_timeout
    with seen.ctx.db.read() as sess:
        hosts_by_id = {h.id: h for h in host_rows.all_by_name(sess)}
        # held while the views are built: the session's identity map holds rows weakly, so
        # without these references each view loaded its project, host and network again
        # (five primary-key queries an instance: 100 instances took ~0.5 s, now ~0.1 s)
        held = (projects.get(sess, seen.caller.project),
                networks.page(sess, "", ALL, visible_to=seen.caller.project)[0])
        down = {i for i, h in hosts_by_id.items() if not host_is_up(h, timeout)}
        rows, _ = instance_rows.page(sess, seen.caller.project, "", ALL)  # by name

        def host(r: Any) -> str:
            return hosts_by_id[r.host_id].name if r.host_id in hosts_by_id else ""

        def state(r: Any) -> str:
            return "unknown" if r.host_id in down else str(r.state)

        if view.q:
            rows = [r for r in rows if view.matches([r.name, state(r), host(r), r.ip, r.image])]
        if view.sort:
            key = {"Name": lambda r: r.name, "State": state, "Host": host,
                   "IP": lambda r: (ip_address(r.ip).version, int(ip_address(r.ip))),
                   "Image": lambda r: r.image,
                   "Memory": lambda r: r.limits.get("memory_bytes") or 0,
                   "Created": lambda r: r.created_at}[view.sort]
            rows.sort(key=key, reverse=view.desc)
        chunk = rows[(number - 1) * per:number * per]
        pools: dict[str, str] = {}  # each host's shared cpuset, resolved once
        items = [hosts.instance_view(sess, r, seen.ctx.settings, pools) for r in chunk]
        del held
    return InstancePage(items, view, number, per, len(rows), _query(view, number, per))


@router.get("/instances")
def instance_list(request: Request, seen: Visit = Depends(visit)) -> Response:
    listed = project_instances(seen, request.query_params)
    if request.query_params.get("part") == "rows":  # the table's htmx poll
        return render(request, "_instance_rows.html", {"listed": listed}, seen=seen)
    return render(request, "instances.html", {
        "listed": listed, "form": {}, "message": "", "explained": None}, seen=seen)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


# the launch form's fields as the API's body takes them (the CLI's `launch` options)
LIMIT_FIELDS = ("cores", "cpus", "cpu_weight", "memory", "pids", "read_bps", "write_bps",
                "read_iops", "write_iops", "ingress", "egress")
TEXT_FIELDS = ("ip", "hostname", "host", "disk", "anti_affinity")


def _pairs(form: Posted, name: str) -> dict[str, str]:
    """A textarea of KEY=VALUE lines (env, constraints)."""
    pairs = {}
    for line in _lines(form.form.get(name, "")):
        key, sep, value = line.partition("=")
        if not sep:
            raise InvalidRequest(f"{name}: {line!r} is not KEY=VALUE")
        pairs[key.strip()] = value
    return pairs


def _volumes(form: Posted) -> list[dict[str, Any]]:
    """SRC:DST[:ro] a line, as `dockyard launch -v`."""
    out = []
    for line in _lines(form.form.get("volumes", "")):
        parts = line.split(":")
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            out.append({"source": parts[0], "target": parts[1], "read_only": parts[2] == "ro"})
        elif len(parts) == 2:
            out.append({"source": parts[0], "target": parts[1]})
        else:
            raise InvalidRequest(f"volumes: {line!r} is not SRC:DST or SRC:DST:ro")
    return out


def launch_spec(form: Posted) -> InstanceCreate:
    """The launch form as the API's body (the CLI's `launch` options); 422 in words."""
    limits = {name: form.field(name) for name in LIMIT_FIELDS if form.field(name)}
    body: dict[str, Any] = {
        "name": form.field("name"), "image": form.field("image"),
        "network": form.field("network") or "default", "limits": limits,
        "lxcfs": form.field("lxcfs") == "on", "strategy": form.field("strategy") or "spread",
        "type": form.field("type") or "container", "env": _pairs(form, "env"),
        "constraints": _pairs(form, "constraints"), "volumes": _volumes(form),
        "cap_add": [c for c in form.field("cap_add").replace(",", " ").split() if c],
        "ssh_keys": _lines(form.form.get("ssh_keys", ""))}
    for name in TEXT_FIELDS:
        if form.field(name):
            body[name] = form.field(name)
    try:
        return InstanceCreate.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(invalid(exc)) from exc


@router.post("/instances")
async def launch(request: Request, form: Posted = Depends(posted)) -> Response:
    seen = form.visit
    ctx, caller = seen.ctx, seen.caller
    explained = None
    try:
        spec = launch_spec(form)
        powers.check_admin_powers(spec, caller.role)
        if form.field("explain") == "on":
            explained = await run_in_threadpool(instances.explain_placement, ctx,
                                                caller.project, spec)
        else:
            spec = await run_in_threadpool(prepare_launch, ctx, caller.project, spec)
            await run_in_threadpool(instances.create, ctx, caller.project, spec,
                                    caller.role == powers.ADMIN)
            return redirect(f"/instances/{spec.name}")
    except DockyardError as exc:  # shown above the form, which keeps what was typed
        message, status = exc.message, exc.status
    else:
        message, status = "", 200
    listed = await run_in_threadpool(project_instances, seen, QueryParams(""))
    return render(request, "instances.html", {
        "listed": listed, "form": form.form, "message": message, "explained": explained},
        status, seen=seen)


def _detail(seen: Visit, name: str) -> dict[str, Any]:
    with seen.ctx.db.read() as sess:
        row = records.instance_by_ref(sess, seen.caller.project, name)
        inst = hosts.instance_view(sess, row, seen.ctx.settings)
        shown = [Event.model_validate(records.event_model(sess, r))
                 for r in events.latest(sess, EVENTS_SHOWN, instance_id=row.id)]
    return {"inst": inst, "events": shown}


@router.get("/instances/{name}")
def instance_page(request: Request, name: str, seen: Visit = Depends(visit)) -> Response:
    values = _detail(seen, name)
    if request.query_params.get("part") == "live":  # the state block's htmx poll
        return render(request, "_instance_live.html", values, seen=seen)
    window = request.query_params.get("range", "1h")
    return render(request, "instance.html", {
        **values, "ranges": list(RANGES), "range": window if window in RANGES else "1h",
        "log_tail": LOG_TAIL},
        seen=seen)


async def log_text(seen: Visit, name: str, tail: int) -> str:
    """The last `tail` lines of the instance's console output, as `dockyard logs --tail`
    reads them (at most LOG_BYTES, the newest); 502 in words when the agent is slower than
    LOG_WAIT."""
    reply = await instance_logs(name, False, str(tail), seen.caller, seen.ctx)
    body = bytearray()
    chunks = cast(AsyncGenerator[bytes, None], reply.body_iterator)
    async with aclosing(chunks):
        try:
            async with asyncio.timeout(LOG_WAIT):
                async for chunk in chunks:
                    body += chunk
                    del body[:-LOG_BYTES]
        except TimeoutError:
            raise BackendError(f"the logs of {name} did not come within "
                               f"{LOG_WAIT:.0f} s") from None
    return body.decode(errors="replace")


@router.get("/instances/{name}/logs")
async def instance_log_panel(request: Request, name: str,
                             seen: Visit = Depends(visit)) -> Response:
    """The logs panel (`_instance_logs.html`): the last `?tail=` lines (200). A refusal
    (another project's instance: 404, as in the API) is said in the panel with its status
    (console.js lets htmx show it there), and the poll goes on."""
    tail = _number(request.query_params, "tail", LOG_TAIL, LOG_TAIL_MOST)
    try:
        text, message, status = await log_text(seen, name, tail), "", 200
    except DockyardError as exc:
        text, message, status = "", exc.message, exc.status
    return render(request, "_instance_logs.html", {
        "lines": text.splitlines(), "message": message, "tail": tail}, status, seen=seen)


@router.post("/instances/{name}/snapshot")
async def instance_snapshot(name: str, form: Posted = Depends(posted)) -> Response:
    """`dockyard snapshot create NAME [--tag T] [--pause]`: answers once the snapshot is
    pushed, then shows it on /snapshots."""
    seen = form.visit
    try:
        body = SnapshotCreate.model_validate({"tag": form.field("tag") or None,
                                              "pause": form.field("pause") == "on"})
    except ValidationError as exc:
        raise InvalidRequest(invalid(exc)) from exc
    snap = await create_snapshot(name, body, seen.caller, seen.ctx)
    return redirect("/snapshots?q=" + quote(snap.name))


@router.post("/instances/{name}/migrate")
async def instance_migrate(name: str, form: Posted = Depends(posted)) -> Response:
    """`dockyard migrate NAME [--to HOST]` (cold): answers once the instance runs on its new
    host (or, after a failure, on its old one again: then the error in words)."""
    seen = form.visit
    body = MigrateRequest.model_validate({"host": form.field("host") or None})
    await migrate_instance(name, body, seen.caller, seen.ctx)
    return redirect(f"/instances/{name}")


@router.post("/instances/{name}/{action}")
async def instance_action(request: Request, name: str, action: str,
                          form: Posted = Depends(posted)) -> Response:
    """stop / start / restart / resize / delete (delete asks first: `confirm=yes`)."""
    seen = form.visit
    project = seen.caller.project
    if action == "delete":
        if form.field("confirm") != "yes":
            values = await run_in_threadpool(_detail, seen, name)
            return render(request, "confirm_delete.html", values, seen=seen)
        await run_in_threadpool(instances.delete, seen.ctx, project, name,
                                form.field("force") == "on")
        return redirect("/instances")
    if action == "resize":
        try:
            patch = LimitsPatch.model_validate({"memory": form.field("memory") or None})
        except ValidationError as exc:
            raise InvalidRequest(invalid(exc)) from exc
        if patch.memory is None:
            raise InvalidRequest("memory: give the new limit, e.g. 512M")
        await run_in_threadpool(resize.resize, seen.ctx, project, name, patch)
        return redirect(f"/instances/{name}")
    try:
        verb = InstanceAction(action)
    except ValueError:
        raise NotFound(f"no action {action!r} (stop, start, restart, resize, delete)") from None
    await run_in_threadpool(instances.set_desired, seen.ctx, project, name, verb)
    return redirect(f"/instances/{name}")
