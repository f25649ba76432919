"""/v1/projects (+ quota), /v1/tokens, /v1/whoami: tenancy.

    POST /v1/projects                admin: a new project
    GET  /v1/projects[/{ref}]        admins see every project, members only their own (404)
    GET  /v1/projects/{ref}/quota    limits and usage (members: their own project)
    PUT  /v1/projects/{ref}/quota    admin: the fields given change, null removes a limit
    POST /v1/tokens                  admin: a user token of a project, shown once
    GET  /v1/tokens[?project=P]      admin: user tokens (ids, roles, descriptions; never secrets)
    DELETE /v1/tokens/{id}           admin: revoke; the token answers 401 from then on
    GET  /v1/whoami                  the caller's token: role, project
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from dockyard.errors import Conflict, NotFound
from dockyard.model.common import Project
from dockyard.model.tenancy import (
    ProjectCreate,
    Quota,
    QuotaUpdate,
    TokenCreate,
    TokenCreated,
    Whoami,
)
from dockyard.server import auth
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import projects, quotas, records, tokens

router = APIRouter(tags=["projects"])


@router.post("/v1/projects", status_code=201, response_model=Project)
def create_project(spec: ProjectCreate, _: Caller = Depends(auth.admin),
                   ctx: ServerContext = Depends(auth.context)) -> Project:
    with ctx.db.session() as sess:
        return records.project_model(projects.create(sess, spec.name))


@router.get("/v1/projects")
def list_projects(caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    with ctx.db.session() as sess:
        rows = projects.listing(sess, None if caller.is_admin else caller.project)
        items = [records.project_model(r).model_dump(mode="json") for r in rows]
    return {"items": items, "next": None}


@router.get("/v1/projects/{ref}", response_model=Project)
def show_project(ref: str, caller: Caller = Depends(auth.user),
                 ctx: ServerContext = Depends(auth.context)) -> Project:
    with ctx.db.session() as sess:
        return records.project_model(projects.visible(sess, ref, caller.project_id,
                                                      caller.is_admin))


@router.get("/v1/projects/{ref}/quota", response_model=Quota)
def show_quota(ref: str, caller: Caller = Depends(auth.user),
               ctx: ServerContext = Depends(auth.context)) -> Quota:
    with ctx.db.session() as sess:
        return records.quota_model(sess, projects.visible(sess, ref, caller.project_id,
                                                          caller.is_admin))


@router.put("/v1/projects/{ref}/quota", response_model=Quota)
def set_quota(ref: str, body: QuotaUpdate, caller: Caller = Depends(auth.admin),
              ctx: ServerContext = Depends(auth.context)) -> Quota:
    """Change the limits given (null: no limit); a limit below the usage refuses new
    claims but takes nothing away."""
    with ctx.db.session() as sess:
        row = projects.visible(sess, ref, caller.project_id, caller.is_admin)
        quotas.update(sess, row.id, body.changes())
        return records.quota_model(sess, row)


@router.post("/v1/tokens", status_code=201, response_model=TokenCreated)
def create_token(spec: TokenCreate, _: Caller = Depends(auth.admin),
                 ctx: ServerContext = Depends(auth.context)) -> TokenCreated:
    """A user token of `project` with `role`; the secret is in this answer only (the store
    keeps its hash)."""
    with ctx.db.session() as sess:
        project = records.project_by_name(sess, spec.project)
        secret = tokens.mint(sess, spec.role.value, project_id=project.id,
                             description=spec.description)
        row = tokens.lookup(sess, secret)
        assert row is not None
        info = records.token_info({project.id: project.name}, row)
    return TokenCreated(**info.model_dump(), token=secret)


@router.get("/v1/tokens")
def list_tokens(request: Request, _: Caller = Depends(auth.admin),
                ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """User tokens, oldest first: every project's, or only the one named by `?project=`."""
    named = request.query_params.get("project")
    with ctx.db.session() as sess:
        project_id = records.project_by_name(sess, named).id if named else None
        names = projects.names_by_id(sess)
        items = [records.token_info(names, r).model_dump(mode="json")
                 for r in tokens.user_tokens(sess, project_id)]
    return {"items": items, "next": None}


@router.delete("/v1/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, _: Caller = Depends(auth.admin),
                 ctx: ServerContext = Depends(auth.context)) -> None:
    """Revoke a user token at once; the last admin token cannot be revoked (409)."""
    with ctx.db.session() as sess:
        row = tokens.revoke(sess, token_id)
        if row is None:
            raise NotFound(f"token {token_id} not found")
        if tokens.admin_count(sess) == 0:
            raise Conflict("this is the last admin token: create another admin token first")


@router.get("/v1/whoami", response_model=Whoami)
def whoami(caller: Caller = Depends(auth.user),
           ctx: ServerContext = Depends(auth.context)) -> Whoami:
    with ctx.db.session() as sess:
        row = tokens.get(sess, caller.token_id)
        project = projects.get(sess, caller.project_id)
        return Whoami(token_id=caller.token_id, role=caller.role,
                      project=project.name if project else "",
                      description=row.description if row else "")
