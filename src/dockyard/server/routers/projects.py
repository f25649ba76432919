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
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.errors import Conflict, NotFound
from dockyard.model.common import Project
from dockyard.model.ids import new_id
from dockyard.model.tenancy import (
    ProjectCreate,
    Quota,
    QuotaUpdate,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    Whoami,
)
from dockyard.server import auth
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import quotas, records, tokens
from dockyard.store.tables import ProjectRow, TokenRow

router = APIRouter(tags=["projects"])


def _visible_project(sess: Session, caller: Caller, ref: str) -> ProjectRow:
    """A project by name or id; another project than the caller's is 404 for a member."""
    row = sess.scalar(select(ProjectRow).where((ProjectRow.name == ref) | (ProjectRow.id == ref)))
    if row is None or not (caller.is_admin or row.id == caller.project_id):
        raise NotFound(f"project {ref!r} not found")
    return row


@router.post("/v1/projects", status_code=201, response_model=Project)
def create_project(spec: ProjectCreate, _: Caller = Depends(auth.admin),
                   ctx: ServerContext = Depends(auth.context)) -> Project:
    try:
        with ctx.db.session() as sess:
            if sess.scalar(select(ProjectRow.id).where(ProjectRow.name == spec.name)):
                raise Conflict(f"a project named {spec.name!r} already exists")
            row = ProjectRow(id=new_id(), name=spec.name)
            sess.add(row)
            sess.flush()
            return records.project_model(row)
    except IntegrityError as exc:  # UNIQUE(name): a concurrent create won
        raise Conflict(f"a project named {spec.name!r} already exists") from exc


@router.get("/v1/projects")
def list_projects(caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    with ctx.db.session() as sess:
        query = select(ProjectRow).order_by(ProjectRow.name)
        if not caller.is_admin:
            query = query.where(ProjectRow.id == caller.project_id)
        items = [records.project_model(r).model_dump(mode="json") for r in sess.scalars(query)]
    return {"items": items, "next": None}


@router.get("/v1/projects/{ref}", response_model=Project)
def show_project(ref: str, caller: Caller = Depends(auth.user),
                 ctx: ServerContext = Depends(auth.context)) -> Project:
    with ctx.db.session() as sess:
        return records.project_model(_visible_project(sess, caller, ref))


def _quota(sess: Session, row: ProjectRow) -> Quota:
    return Quota(project=row.name, limits=quotas.limits(sess, row.id),
                 usage=quotas.usage(sess, row.id))


@router.get("/v1/projects/{ref}/quota", response_model=Quota)
def show_quota(ref: str, caller: Caller = Depends(auth.user),
               ctx: ServerContext = Depends(auth.context)) -> Quota:
    with ctx.db.session() as sess:
        return _quota(sess, _visible_project(sess, caller, ref))


@router.put("/v1/projects/{ref}/quota", response_model=Quota)
def set_quota(ref: str, body: QuotaUpdate, caller: Caller = Depends(auth.admin),
              ctx: ServerContext = Depends(auth.context)) -> Quota:
    """Change the limits given (null: no limit); a limit below the usage refuses new
    claims but takes nothing away."""
    with ctx.db.session() as sess:
        row = _visible_project(sess, caller, ref)
        quotas.update(sess, row.id, body.changes())
        return _quota(sess, row)


def _token_info(names: dict[str, str], row: TokenRow) -> TokenInfo:
    return TokenInfo(id=row.id, project=names.get(row.project_id or ""), role=row.role,
                     description=row.description, created_at=records.as_utc(row.created_at))


def _project_names(sess: Session) -> dict[str, str]:
    return dict(sess.execute(select(ProjectRow.id, ProjectRow.name)).tuples().all())


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
        info = _token_info({project.id: project.name}, row)
    return TokenCreated(**info.model_dump(), token=secret)


@router.get("/v1/tokens")
def list_tokens(request: Request, _: Caller = Depends(auth.admin),
                ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """User tokens, oldest first: every project's, or only the one named by `?project=`."""
    named = request.query_params.get("project")
    with ctx.db.session() as sess:
        project_id = records.project_by_name(sess, named).id if named else None
        names = _project_names(sess)
        items = [_token_info(names, r).model_dump(mode="json")
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
        admins = sess.scalar(select(func.count()).select_from(TokenRow)
                             .where(TokenRow.role == "admin")) or 0
        if admins == 0:
            raise Conflict("this is the last admin token: create another admin token first")


@router.get("/v1/whoami", response_model=Whoami)
def whoami(caller: Caller = Depends(auth.user),
           ctx: ServerContext = Depends(auth.context)) -> Whoami:
    with ctx.db.session() as sess:
        row = sess.get(TokenRow, caller.token_id)
        project = sess.get(ProjectRow, caller.project_id)
        return Whoami(token_id=caller.token_id, role=caller.role,
                      project=project.name if project else "",
                      description=row.description if row else "")
