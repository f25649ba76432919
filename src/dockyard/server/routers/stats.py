"""Monitoring: sample history, latest samples, `top` (via the agent) and `/metrics`."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dockyard.errors import InvalidRequest
from dockyard.server import auth, metrics
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.server.routers.instances import agent_target
from dockyard.store import instances, records, stats

router = APIRouter(tags=["stats"])
DEFAULT_WINDOW = timedelta(minutes=10)


# What `since` accepts, stated in the schema: seconds ago, or an ISO 8601 date/time (UTC when
# no offset). Every value the pattern admits parses (an impossible day such as 02-30 is taken
# as the month's last day), so the schema and the server agree.
SINCE_PATTERN = (
    r"^([0-9]{1,9}(\.[0-9]{1,6})?"
    r"|[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?)$")
_SINCE = re.compile(SINCE_PATTERN)


def parse_since(value: str | None, now: datetime) -> datetime:
    """An ISO 8601 time (UTC if no offset) or a number of seconds ago; default 10 min ago."""
    if value is None or value == "":
        return now - DEFAULT_WINDOW
    if not _SINCE.match(value):
        raise InvalidRequest(f"since={value!r}: not an ISO time nor seconds ago")
    if ":" not in value and "-" not in value:
        return now - timedelta(seconds=float(value))
    year, month, day = int(value[0:4]), int(value[5:7]), int(value[8:10])
    last = calendar.monthrange(year, month)[1]
    text = f"{value[:8]}{min(day, last):02d}{value[10:]}".replace("Z", "+00:00")
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@router.get("/v1/instances/{ref}/stats")
def instance_stats(ref: str, since: str | None = Query(
                       None, pattern=SINCE_PATTERN,
                       description="ISO time or seconds ago (default 600)"),
                   limit: int = Query(10000, ge=1, le=100000),
                   caller: Caller = Depends(auth.user),
                   ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """Samples of one instance, oldest first: raw for 24 h, 10-minute rows beyond."""
    start = parse_since(since, datetime.now(UTC))
    with ctx.db.session() as sess:
        row = records.instance_by_ref(sess, caller.project, ref)
        items = stats.history(sess, row.id, start, limit)
    return {"items": [s.model_dump(mode="json") for s in items]}


@router.get("/v1/stats")
def project_stats(caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """The newest sample of every instance of the caller's project (with its name)."""
    with ctx.db.session() as sess:
        latest = stats.latest_per_instance(sess)
        items = [{"name": name, **latest[iid].model_dump(mode="json")}
                 for iid, name in instances.names(sess, caller.project) if iid in latest]
    return {"items": items}


@router.get("/v1/instances/{ref}/top")
def instance_top(ref: str, caller: Caller = Depends(auth.user),
                 ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """The instance's processes (`docker top` on its host): titles and rows."""
    host, url, secret, instance_id = agent_target(ctx, caller.project, ref)
    return ctx.agents.top(host, url, secret, instance_id)


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(project: auth.ProjectParam = None, caller: Caller = Depends(auth.user),
                       ctx: ServerContext = Depends(auth.context)) -> Response:
    """Prometheus text format of the latest samples, behind a user token (401 without one,
    403 for a host token): an admin sees every series (one project's with `?project=`), a
    member only its project's instance series (see `server/metrics.py`)."""
    scope = None if caller.is_admin and project is None else caller.project
    return Response(generate_latest(metrics.registry(ctx.db, scope)),
                    media_type=CONTENT_TYPE_LATEST)
