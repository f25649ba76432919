"""POST /v1/hooks/{repo-id}: push webhooks of Gitea/Forgejo, GitHub and GitLab. No bearer
token: the body's signature (HMAC-SHA256 with the repository's webhook secret) is the
credential, checked over the raw bytes before anything is parsed (server/builds.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from dockyard.model.build import HookReply
from dockyard.server import auth
from dockyard.server import builds as service
from dockyard.server.context import ServerContext
from dockyard.server.routers.builds import raw_body, runner

router = APIRouter(tags=["builds"])


@router.post("/v1/hooks/{repo_id}", response_model=HookReply)
async def push_hook(repo_id: str, request: Request,
                    ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """A push: a build of the pushed commit is queued when it is the repository's branch;
    other branches and events are acknowledged and ignored, a replayed delivery dropped."""
    body = await raw_body(request, ctx.settings.hook_max_bytes, "webhook body")
    builds = runner(request)
    reply = await run_in_threadpool(service.webhook, ctx, builds.box, repo_id,
                                    dict(request.headers), body)
    if reply.queued:
        builds.poke()
    return reply.model_dump(mode="json")
