"""/instances (list, launch) and /instances/{name} (detail, actions, resize, delete).

Each action calls what `routers/instances.py` calls, with the visitor's caller: launch
`powers.check_admin_powers` → `snapshots.prepare_launch` → `instances.create`; stop, start,
restart `instances.set_desired`; resize `resize.resize`; delete `instances.delete`. Another
project's instance is not found (404), as in the API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from dockyard.errors import DockyardError, InvalidRequest, NotFound
from dockyard.model.common import Event
from dockyard.model.instance import Instance, InstanceAction, InstanceCreate, LimitsPatch
from dockyard.server import hosts, instances, powers, resize
from dockyard.server.snapshots import prepare_launch
from dockyard.store import events, records
from dockyard.store import instances as instance_rows
from dockyard.web.base import PageRoute, Posted, Visit, invalid, posted, redirect, render, visit
from dockyard.web.charts import RANGES

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE = 100  # instances on one page (the API's default page)
EVENTS_SHOWN = 30


def project_instances(seen: Visit, after: str = "") -> tuple[list[Instance], str | None]:
    """A page of the project's instances by name, and the name the next page starts after."""
    with seen.ctx.db.read() as sess:
        rows, more = instance_rows.page(sess, seen.caller.project, after, PAGE)
        items = [hosts.instance_view(sess, r, seen.ctx.settings) for r in rows]
    return items, rows[-1].name if more else None


@router.get("/instances")
def instance_list(request: Request, seen: Visit = Depends(visit)) -> Response:
    after = request.query_params.get("after", "")
    items, following = project_instances(seen, after)
    values = {"items": items, "after": after, "following": following}
    if request.query_params.get("part") == "rows":  # the table's htmx poll
        return render(request, "_instance_rows.html", values, seen=seen)
    return render(request, "instances.html", {
        **values, "form": {}, "message": "", "explained": None}, seen=seen)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def launch_spec(form: Posted) -> InstanceCreate:
    """The launch form as the API's body (the CLI's `launch` options); 422 in words."""
    limits: dict[str, Any] = {}
    for name in ("cores", "cpus", "memory", "pids"):
        if form.field(name):
            limits[name] = form.field(name)
    body: dict[str, Any] = {"name": form.field("name"), "image": form.field("image"),
                            "network": form.field("network") or "default", "limits": limits,
                            "lxcfs": form.field("lxcfs") == "on",
                            "strategy": form.field("strategy") or "spread"}
    for name in ("ip", "hostname", "host"):
        if form.field(name):
            body[name] = form.field(name)
    env = {}
    for line in _lines(form.form.get("env", "")):
        key, sep, value = line.partition("=")
        if not sep:
            raise InvalidRequest(f"env: {line!r} is not KEY=VALUE")
        env[key.strip()] = value
    body["env"] = env
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
    items, following = await run_in_threadpool(project_instances, seen)
    return render(request, "instances.html", {
        "items": items, "after": "", "following": following, "form": form.form,
        "message": message, "explained": explained}, status, seen=seen)


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
        **values, "ranges": list(RANGES), "range": window if window in RANGES else "1h"},
        seen=seen)


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
