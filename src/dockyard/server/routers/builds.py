"""/v1/repos and /v1/builds: repositories a project builds from (the webhook secret shown
once, credentials never), builds (start, start from an uploaded tar archive, list, show,
cancel) and their logs, streamed live with `?follow=true`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse

from dockyard.errors import PayloadTooLarge
from dockyard.model.build import FINISHED, Build, BuildStart, Repo, RepoCreate, RepoCreated
from dockyard.server import auth
from dockyard.server import builds as service
from dockyard.server.auth import Caller
from dockyard.server.build_runner import BuildRunner
from dockyard.server.context import ServerContext
from dockyard.store import builds as store

router = APIRouter(tags=["builds"])

FOLLOW_RECHECK = 1.0  # seconds: a follower also looks without a wake-up (other servers)


async def raw_body(request: Request, limit: int, what: str) -> bytes:
    """The raw body, refused (413) as soon as it is over `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{what} over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"{what} over {limit} bytes")
    return bytes(body)


def runner(request: Request) -> BuildRunner:
    built: BuildRunner = request.app.state.builds
    return built


@router.post("/v1/repos", response_model=RepoCreated, status_code=201)
def add_repo(spec: RepoCreate, caller: Caller = Depends(auth.user),
             ctx: ServerContext = Depends(auth.context),
             builds: BuildRunner = Depends(runner)) -> dict[str, Any]:
    """Add a repository; the answer carries its `webhook_secret`, shown this once."""
    return service.add_repo(ctx, builds.box, caller.project, spec).model_dump(mode="json")


@router.get("/v1/repos")
def list_repos(limit: int = Query(100, ge=1, le=1000), after: str = "",
               caller: Caller = Depends(auth.user),
               ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    items, more = service.repo_page(ctx, caller.project, after, limit)
    return {"items": [r.model_dump(mode="json") for r in items],
            "next": items[-1].name if more else None}


@router.get("/v1/repos/{ref}", response_model=Repo)
def show_repo(ref: str, caller: Caller = Depends(auth.user),
              ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    return service.show_repo(ctx, caller.project, ref).model_dump(mode="json")


@router.delete("/v1/repos/{ref}", status_code=204)
def remove_repo(ref: str, caller: Caller = Depends(auth.user),
                ctx: ServerContext = Depends(auth.context)) -> None:
    """Remove a repository with its builds (409 while one runs); images stay."""
    service.remove_repo(ctx, caller.project, ref)


@router.post("/v1/repos/{ref}/builds", response_model=Build, status_code=202)
def start_build(ref: str, body: BuildStart | None = None, caller: Caller = Depends(auth.user),
                ctx: ServerContext = Depends(auth.context),
                builds: BuildRunner = Depends(runner)) -> dict[str, Any]:
    """Queue a build of `ref` (default: the repository's branch)."""
    build = service.start(ctx, caller.project, ref, body.ref if body else None)
    builds.poke()
    return build.model_dump(mode="json")


@router.post("/v1/repos/{ref}/builds/upload", response_model=Build, status_code=202,
             openapi_extra={"requestBody": {
                 "required": True, "description": "a tar archive (plain or gzip) of the "
                 "build context", "content": {"application/octet-stream": {
                     "schema": {"type": "string", "format": "binary"}}}}})
async def upload_build(ref: str, request: Request, caller: Caller = Depends(auth.user),
                       ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """Queue a build of the uploaded body, a tar archive (plain or gzip) of the build context,
    for a repository without a git URL: 413 over the server's `build_upload_max_bytes`, 422
    when it is not a tar archive, has a path or link outside itself, or no Dockerfile."""
    body = await raw_body(request, ctx.settings.build_upload_max_bytes, "build context")
    build = await run_in_threadpool(service.upload, ctx, caller.project, ref, body)
    runner(request).poke()
    return build.model_dump(mode="json")


@router.get("/v1/builds")
def list_builds(repo: str | None = None, limit: int = Query(100, ge=1, le=1000),
                before: int | None = Query(None, description="the `next` of the last page"),
                caller: Caller = Depends(auth.user),
                ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """The project's builds (of one repository), newest first."""
    items, cursor = service.build_page(ctx, caller.project, repo, before, limit)
    return {"items": [b.model_dump(mode="json") for b in items], "next": cursor}


@router.get("/v1/builds/{build_id}", response_model=Build)
def show_build(build_id: str, caller: Caller = Depends(auth.user),
               ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    return service.show_build(ctx, caller.project, build_id).model_dump(mode="json")


@router.post("/v1/builds/{build_id}/cancel", response_model=Build)
def cancel_build(build_id: str, caller: Caller = Depends(auth.user),
                 ctx: ServerContext = Depends(auth.context),
                 builds: BuildRunner = Depends(runner)) -> dict[str, Any]:
    """Cancel a queued build, or stop a running one (its agent kills the build)."""
    view, host = service.cancel(ctx, caller.project, build_id)
    if host is not None:
        builds.cancel_on(host, build_id)
    builds.poke()
    ctx.notifier.bump()  # a queued build's cancel event
    return view.model_dump(mode="json")


@router.get("/v1/builds/{build_id}/logs", response_class=PlainTextResponse,
            responses={200: {"description": "the build's log lines, streamed"}})
async def build_logs(build_id: str, follow: bool = False, after: int = Query(0, ge=0),
                     caller: Caller = Depends(auth.user),
                     ctx: ServerContext = Depends(auth.context),
                     builds: BuildRunner = Depends(runner)) -> StreamingResponse:
    """The build's log as text, from line `after`+1; `follow`: until the build ends."""
    project = caller.project
    await run_in_threadpool(service.show_build, ctx, project, build_id)  # 404 first

    def read(last: int) -> tuple[list[tuple[int, str]], bool]:
        with ctx.db.read() as sess:
            done = store.build(sess, project, build_id).state in FINISHED
            return store.log_lines(sess, build_id, last, 1000), done

    async def lines() -> AsyncIterator[bytes]:
        last = after
        while True:
            token = builds.hub.token(build_id)
            batch, done = await run_in_threadpool(read, last)
            if batch:
                last = batch[-1][0]
                yield "".join(f"{text}\n" for _, text in batch).encode()
                continue
            if done or not follow or ctx.notifier.closing:
                return
            await ctx.notifier.wait(token, FOLLOW_RECHECK)

    return StreamingResponse(lines(), media_type="text/plain")
