"""/v1/images: the cluster registry's images, and pushes into it from a host's engine.

    GET  /v1/images              catalog × tags × manifest sizes; `hosts`: the up hosts whose
                                 engine has the image (asked through their agents, in parallel)
    GET  /v1/images/{NAME:TAG}   one image, 404 when the registry lacks it
    POST /v1/images/push         the host's agent tags + pushes; progress as JSON lines
    POST /v1/images/import       body: a `docker save` archive, streamed through to the
                                 chosen host's agent (docker load, tag, push); never in memory
    DELETE /v1/images/{NAME:TAG} 409 while an instance or a snapshot uses it

Each repository belongs to a project or is shared (server/image_access.py): a member lists and
shows the shared ones and its project's, pushes and deletes only its project's (PROJECT/NAME;
403 for a shared one, 404 for another project's). Import stays admin-only: `docker load` on a
host's engine may replace any local tag there.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from dockyard.errors import BackendError, Conflict, InvalidRequest, NotFound
from dockyard.model.image import ImagePush, RegistryImage, split_ref
from dockyard.model.validators import (
    IMAGE_REF_SCHEMA,
    LOCAL_IMAGE_RE,
    LOCAL_IMAGE_SCHEMA,
    check_image_ref,
)
from dockyard.server import auth, image_access
from dockyard.server.agent_proxy import AgentClient
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import hosts, images

router = APIRouter(prefix="/v1/images", tags=["images"])

Target = tuple[str, str, str]  # host name, agent API url, secret


def _up_hosts(ctx: ServerContext) -> list[Target]:
    with ctx.db.session() as sess:
        return [(r.name, r.api_url, r.api_secret) for r in hosts.reachable(sess)]


def _hosts_having(ctx: ServerContext, images: list[RegistryImage]) -> None:
    """Fill in `hosts`: a host has an image when its engine knows the registry reference or
    the bare NAME:TAG (a push leaves only the latter). Hosts that do not answer are left out."""
    def tags(target: Target) -> set[str]:
        try:
            return ctx.agents.image_tags(*target)
        except BackendError:
            return set()

    targets = _up_hosts(ctx)
    if not targets or not images:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        having = dict(zip((t[0] for t in targets), pool.map(tags, targets), strict=True))
    for image in images:
        bare = f"{image.name}:{image.tag}"
        image.hosts = [h for h, t in having.items() if image.ref in t or bare in t]


def _repo(ctx: ServerContext, name: str) -> image_access.Repo:
    with ctx.db.session() as sess:
        return image_access.classify(name, image_access.project_names(sess))


def _list(ctx: ServerContext, caller: Caller) -> list[RegistryImage]:
    with ctx.db.session() as sess:
        projects = image_access.project_names(sess)
    images = [i for i in ctx.registry.images()
              if image_access.can_read(caller, image_access.classify(i.name, projects))]
    _hosts_having(ctx, images)
    return images


@router.get("")
async def list_images(caller: Caller = Depends(auth.user),
                      ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    images = await run_in_threadpool(_list, ctx, caller)
    return {"items": [i.model_dump() for i in images], "next": None}


def _parse(ref: str) -> tuple[str, str, str]:
    """(registry, name, tag) of a reference given in a path; 400 when it is not one."""
    try:
        check_image_ref(ref)
    except ValueError as exc:
        raise InvalidRequest(f"{ref!r} is not an image reference: {exc}") from exc
    return split_ref(ref)


def _show(ctx: ServerContext, caller: Caller, ref: str) -> RegistryImage:
    registry, name, tag = _parse(ref)
    image_access.check_read(caller, _repo(ctx, name))
    image = None if registry not in ("", ctx.registry.address) else ctx.registry.image(name, tag)
    if image is None:
        raise NotFound(f"image {ref} is not in the registry {ctx.registry.address}")
    _hosts_having(ctx, [image])
    return image


ImageRef = Annotated[str, Path(description="[REGISTRY/]NAME[:TAG]",
                                json_schema_extra=IMAGE_REF_SCHEMA)]


@router.get("/{ref:path}", response_model=RegistryImage)
async def show_image(ref: ImageRef, caller: Caller = Depends(auth.user),
                     ctx: ServerContext = Depends(auth.context)) -> RegistryImage:
    return await run_in_threadpool(_show, ctx, caller, ref)


def _push_host(ctx: ServerContext, wanted: str | None) -> Target:
    targets = _up_hosts(ctx)
    if wanted is not None:
        found = [t for t in targets if t[0] == wanted]
        if not found:
            raise NotFound(f"host {wanted} is not up")
        return found[0]
    if len(targets) == 1:
        return targets[0]
    local = [t for t in targets if t[0] == "local"]
    if local:
        return local[0]
    raise InvalidRequest(f"{len(targets)} hosts are up: say which one has the image (host)")


@router.post("/import", openapi_extra={"requestBody": {
    "required": True, "description": "a `docker save` archive",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def import_image(name: Annotated[str, Query(
                           description="NAME[:TAG] in this registry (no registry part)",
                           json_schema_extra=LOCAL_IMAGE_SCHEMA)],
                       request: Request, host: str | None = None,
                       caller: Caller = Depends(auth.admin),
                       ctx: ServerContext = Depends(auth.context)) -> dict[str, str]:
    """Import a `docker save` archive (the request body) as NAME:TAG into the registry,
    through one host's agent; 400 when the body is not an image archive."""
    registry, repo, tag = split_ref(name)
    if registry or not repo or not LOCAL_IMAGE_RE.match(name):
        raise InvalidRequest(f"{name}: give NAME:TAG without a registry")
    image_access.check_write(caller, await run_in_threadpool(_repo, ctx, repo))
    target = AgentClient(*await run_in_threadpool(_push_host, ctx, host), ctx.agents.verify)
    ref = await target.load_image(f"{repo}:{tag}", request.stream())
    return {"ref": ref, "host": target.name}


def _delete(ctx: ServerContext, caller: Caller, ref: str) -> None:
    registry, name, tag = _parse(ref)
    image_access.check_write(caller, _repo(ctx, name))
    full = f"{ctx.registry.address}/{name}:{tag}"
    if registry not in ("", ctx.registry.address) or ctx.registry.size(name, tag) is None:
        raise NotFound(f"image {ref} is not in the registry {ctx.registry.address}")
    with ctx.db.session() as sess:
        users = images.users(sess, full, f"{name}:{tag}")
    if users:
        raise Conflict(f"image {ref} is in use by {', '.join(sorted(users))}")
    ctx.registry.delete(name, tag)


@router.delete("/{ref:path}", status_code=204)
async def delete_image(ref: ImageRef, caller: Caller = Depends(auth.user),
                       ctx: ServerContext = Depends(auth.context)) -> None:
    await run_in_threadpool(_delete, ctx, caller, ref)


@router.post("/push", responses={200: {"content": {"application/x-ndjson": {}},
                                       "description": "progress lines (PushProgress)"}})
async def push_image(body: ImagePush, caller: Caller = Depends(auth.user),
                     ctx: ServerContext = Depends(auth.context)) -> StreamingResponse:
    """Push a local image of a host's engine into the registry under its own name (progress
    as JSON lines; the last line has `ref` on success, `error` on failure). A member pushes
    only its project's names (PROJECT/NAME)."""
    image_access.check_write(caller, await run_in_threadpool(_repo, ctx,
                                                             split_ref(body.source)[1]))
    host, url, secret = await run_in_threadpool(_push_host, ctx, body.host)
    lines = await ctx.agents.open_push(host, url, secret, body.model_dump())
    return StreamingResponse(lines, media_type="application/x-ndjson")
