"""The web console (issue 14): server-rendered pages over the same services, tokens, projects
and roles as /v1 (see README.md)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from dockyard.server.context import ServerContext
from dockyard.web import charts, cluster, instances, login, platform, resources, terminal
from dockyard.web.session import session_key

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, ctx: ServerContext) -> None:
    """Mount the console at `/` (its static files at `/static`)."""
    app.state.web_key = session_key(ctx)
    for page in (login, cluster, instances, charts, terminal, resources, platform):
        app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
