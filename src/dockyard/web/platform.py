"""/stacks, /stacks/{name} (services, replicas with health, rollout status, history; rollback)
and /builds, /builds/{id} (state, the log followed live): what `routers/stacks.py` and
`routers/builds.py` show, with the same services, caller and project scoping (another
project's stack or build is not found)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from dockyard.model.build import FINISHED
from dockyard.server import builds, stacks
from dockyard.store import builds as build_rows
from dockyard.web.base import PageRoute, Posted, Visit, posted, redirect, render, visit
from dockyard.web.resources import listing
from dockyard.web.tables import Cell, Table, row

router = APIRouter(route_class=PageRoute, include_in_schema=False)

STACKS_SHOWN = 1000
BUILDS_SHOWN = 200
LOG_LINES = 5000  # lines of a build's log one answer carries at most

STACKS = ("Name", "Status", "Version", "Services", "Replicas running", "Updated")


@router.get("/stacks")
def stack_list(request: Request, seen: Visit = Depends(visit)) -> Response:
    views = stacks.page(seen.ctx, seen.caller.project, "", STACKS_SHOWN)
    lines = []
    for v in views:
        running = sum(s.running for s in v.services)
        wanted = sum(s.replicas for s in v.services)
        lines.append(row(f"/stacks/{v.name}", v.name, v.status, Cell(str(v.version), v.version),
                         ", ".join(s.name for s in v.services),
                         Cell(f"{running} / {wanted}", running), v.updated_at))
    return listing(request, seen, "Stacks",
                   [Table.of(f"Stacks of project {seen.project_name}", STACKS, lines,
                             request.query_params)],
                   hint="Deploy one with dockyard stack deploy NAME -f compose.yaml.")


def _stack(seen: Visit, name: str) -> dict[str, Any]:
    return {"stack": stacks.show(seen.ctx, seen.caller.project, name),
            "history": list(reversed(stacks.history(seen.ctx, seen.caller.project, name)))}


@router.get("/stacks/{name}")
def stack_page(request: Request, name: str, seen: Visit = Depends(visit)) -> Response:
    values = _stack(seen, name)
    if request.query_params.get("part") == "live":  # the rollout's htmx poll
        return render(request, "_stack_live.html", values, seen=seen)
    return render(request, "stack.html", values, seen=seen)


@router.post("/stacks/{name}/rollback")
async def stack_rollback(name: str, form: Posted = Depends(posted)) -> Response:
    """Back to the previous version (of one service when the form names it), as
    `POST /v1/stacks/{name}/rollback`; 409 in words when there is none."""
    seen = form.visit
    await run_in_threadpool(stacks.rollback, seen.ctx, seen.caller.project, name,
                            form.field("service") or None)
    return redirect(f"/stacks/{name}")


BUILDS = ("Build", "Repository", "State", "Commit", "Trigger", "Image", "Created", "Duration")


@router.get("/builds")
def build_list(request: Request, seen: Visit = Depends(visit)) -> Response:
    items, _ = builds.build_page(seen.ctx, seen.caller.project, None, None, BUILDS_SHOWN)
    lines = [row(f"/builds/{b.id}", b.id, b.repo, b.state.value, (b.commit or "")[:12],
                 b.trigger, b.image or "", b.created_at,
                 Cell("" if b.duration is None else f"{b.duration:.0f} s", b.duration))
             for b in items]
    return listing(request, seen, "Builds",
                   [Table.of(f"The newest {BUILDS_SHOWN} builds of project "
                             f"{seen.project_name} at most", BUILDS, lines,
                             request.query_params)],
                   hint="Start one with dockyard build start REPO, or by a push webhook.")


def _build(seen: Visit, build_id: str, after: int) -> dict[str, Any]:
    build = builds.show_build(seen.ctx, seen.caller.project, build_id)
    with seen.ctx.db.read() as sess:
        lines = build_rows.log_lines(sess, build.id, after, LOG_LINES)
    return {"build": build, "lines": lines, "finished": build.state in FINISHED,
            "last": lines[-1][0] if lines else after}


@router.get("/builds/{build_id}")
def build_page(request: Request, build_id: str, seen: Visit = Depends(visit)) -> Response:
    if request.query_params.get("part") == "log":  # the log's htmx poll: the new lines
        try:
            after = max(0, int(request.query_params.get("after", "0")))
        except ValueError:
            after = 0
        return render(request, "_build_log.html", _build(seen, build_id, after), seen=seen)
    return render(request, "build.html", _build(seen, build_id, 0), seen=seen)
