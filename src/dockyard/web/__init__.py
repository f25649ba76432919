"""The web console (issue 14): server-rendered pages over the same services, tokens, projects
and roles as /v1 (see README.md)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from dockyard.server.context import ServerContext
from dockyard.web import charts, cluster, instances, login
from dockyard.web.session import session_key

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, ctx: ServerContext) -> None:
    """Mount the console at `/` (its static files at `/static`)."""
    app.state.web_key = session_key(ctx)
    app.include_router(login.router)
    app.include_router(cluster.router)
    app.include_router(instances.router)
    app.include_router(charts.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
