"""Repositories a project builds from, their builds, and the server ⇄ agent build protocol.

A repository's image is `PROJECT/NAME` in the cluster registry; a build of commit C on branch
B pushes `REGISTRY/PROJECT/NAME:<C[:12]>` and then `…:B`; a build of an uploaded tar archive
(a repository without url) pushes `…:<sha256 of the archive[:12]>` only. Credentials of a
private repository (a token for https, or an ssh deploy key) go in on creation and never
come back out.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, JsonValue, field_validator

from dockyard.model.instance import MemoryBytes, Strict
from dockyard.model.validators import NAME_SCHEMA, check_name, matching, schema_rule

SHORT_SHA = 12
BRANCH_RE = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}(?<![/.])$")
# a repository path inside the checkout: relative, no `..`, no leading `/`
REL_PATH_RE = re.compile(r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._/ -]{1,255}$")
GIT_URL_RE = re.compile(r"^(https?|git|ssh|file)://\S+$|^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:\S+$")
DEPLOY_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?/[a-z0-9]([a-z0-9-]{0,61}"
                       r"[a-z0-9])?$")
IMAGE_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


class BuildState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


FINISHED = frozenset({BuildState.succeeded, BuildState.failed, BuildState.cancelled})


def short_sha(commit: str) -> str:
    return commit[:SHORT_SHA]


def check_branch(value: str) -> str:
    if not BRANCH_RE.match(value):
        raise ValueError("must be a git branch name (letters, digits, '.', '_', '-', '/')")
    return value


def tag_of_branch(branch: str) -> str:
    """A Docker tag for a branch: `feature/x` → `feature-x` (tags allow no '/')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", branch)[:128].lstrip(".-") or "branch"


# what each field's validator accepts, shown to OpenAPI clients (the schema is the contract)
BRANCH_SCHEMA = schema_rule(BRANCH_RE, 1, 200)
REL_PATH_SCHEMA = schema_rule(REL_PATH_RE, 1, 255)
GIT_URL_SCHEMA = schema_rule(GIT_URL_RE, 1, 1024)
IMAGE_NAME_SCHEMA = schema_rule(IMAGE_NAME_RE, 1, 255)
DEPLOY_SCHEMA = schema_rule(DEPLOY_RE, 3, 127)
CREDENTIALS_SCHEMA: dict[str, JsonValue] = {"pattern": r"\S", "minLength": 1, "maxLength": 16384}
InRepoPath = Annotated[str, matching(REL_PATH_RE, "must be a path inside the repository "
                                     "(relative, no '..')")]


class RepoCreate(Strict):
    name: str = Field(json_schema_extra=NAME_SCHEMA)
    url: str | None = Field(description="git URL: https://…, git://…, ssh://… or "
                            "user@host:path; null: the repository builds uploaded tar "
                            "archives (POST …/builds/upload; compose `build:` of a local "
                            "directory) and has no pushes", json_schema_extra=GIT_URL_SCHEMA)
    branch: str = Field("main", json_schema_extra=BRANCH_SCHEMA)
    dockerfile: InRepoPath = Field("Dockerfile", json_schema_extra=REL_PATH_SCHEMA)
    context: InRepoPath = Field(".", json_schema_extra=REL_PATH_SCHEMA)
    image: Annotated[str | None, matching(
        IMAGE_NAME_RE, "must be an image name: lower-case parts separated by '/'")] = Field(
        None, description="NAME or PROJECT/NAME in the registry; default: PROJECT/<repo name>",
        json_schema_extra=IMAGE_NAME_SCHEMA)
    deploy: list[Annotated[str, Field(json_schema_extra=DEPLOY_SCHEMA)]] = Field(
        default_factory=list, description="STACK/SERVICE to roll out")
    credentials: str | None = Field(None, description="a token (https) or an ssh private key "
                                    "(deploy key); stored encrypted, never returned",
                                    json_schema_extra=CREDENTIALS_SCHEMA)
    timeout: Annotated[float, Field(gt=0)] | None = Field(
        None, description="seconds a build may take (at most the server's build limit)")
    memory: MemoryBytes = Field(None, description="memory of a build's steps, e.g. 1G (at "
                                "most the server's build limit; default: that limit)")
    cpus: float | None = Field(None, gt=0, le=1024, description="CPUs of a build's steps (CFS "
                               "quota, as docker; at most the server's build limit)")

    _name = field_validator("name")(check_name)
    _branch = field_validator("branch")(check_branch)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and (not GIT_URL_RE.match(value) or len(value) > 1024):
            raise ValueError("must be a git URL (https://, git://, ssh://, file:// or "
                             "user@host:path)")
        return value

    @field_validator("deploy")
    @classmethod
    def _deploy(cls, value: list[str]) -> list[str]:
        for item in value:
            if not DEPLOY_RE.match(item):
                raise ValueError(f"{item!r} must be STACK/SERVICE")
        return sorted(set(value))

    @field_validator("credentials")
    @classmethod
    def _credentials(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or len(value) > 16384):
            raise ValueError("must be a token or an ssh private key (at most 16 KiB)")
        return value


class Repo(BaseModel):
    id: str
    name: str
    project: str
    url: str | None  # None: builds uploaded archives
    branch: str
    dockerfile: str
    context: str
    image: str  # PROJECT/NAME in the registry
    deploy: list[str]
    has_credentials: bool
    timeout: float | None
    memory_bytes: int | None  # None: the server's build limit
    cpus: float | None
    hook_url: str  # path of the push webhook: POST it with the webhook secret
    created_at: str


class RepoCreated(Repo):
    webhook_secret: str  # shown once, at creation


class BuildStart(Strict):
    ref: Annotated[str | None, matching(BRANCH_RE, "must be a branch, tag or commit")] = Field(
        None, description="branch, tag or commit; default: the repo's branch",
        json_schema_extra=BRANCH_SCHEMA)


class Build(BaseModel):
    id: str
    repo: str  # the repository's name
    repo_id: str
    project: str
    ref: str
    branch: str | None
    commit: str | None
    author: str | None
    message: str | None
    trigger: str  # webhook | manual
    state: BuildState
    host: str | None
    image: str | None  # the pushed reference REGISTRY/PROJECT/NAME:<short sha>
    digest: str | None
    step: str | None  # the Dockerfile step that failed
    error: str | None
    operation: str | None
    rollout: str | None  # what the delivery to the repository's --deploy services did
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration: float | None


class HookReply(BaseModel):
    queued: bool
    build: str | None = None
    reason: str | None = None


# --- server → agent -------------------------------------------------------------------------

class AgentBuild(BaseModel):
    """One build for an agent: clone `ref` of `url` (at exactly `commit` when known), or
    unpack the uploaded archive `archive_sha256`; build, push `tags` (the first names the
    commit or the archive), answer the digest."""

    id: str
    url: str | None  # None: the context is the uploaded archive `archive_sha256`
    ref: str
    commit: str | None
    dockerfile: str
    context: str
    repository: str  # REGISTRY/PROJECT/NAME
    branch_tag: str | None  # pushed after the commit's tag; None for a tag or commit build
    credentials: str | None
    timeout: float
    memory_bytes: int = Field(description="memory limit of each build step's container "
                              "(swap included: none)")
    cpus: float = Field(description="CFS quota of each build step's container, in CPUs")
    archive_sha256: str | None = Field(None, description="the build's context is this "
                                       "uploaded tar archive (PUT /v1/builds/{id}/context "
                                       "first), not a git checkout; tagged :<its first 12 "
                                       "hex digits>")
    denied_prefixes: list[str] = Field(default_factory=list,
                                       description="registry repositories (REGISTRY/P/) the "
                                       "build may not use as a base: other projects'")


class BuildLine(BaseModel):
    """One line of an agent's build stream: a log line, a fact, or the end (`status`)."""

    log: str | None = None
    commit: str | None = None  # the commit the clone checked out
    author: str | None = None
    message: str | None = None
    status: BuildState | None = None  # succeeded | failed | cancelled: the last line
    image: str | None = None
    digest: str | None = None
    step: str | None = None
    error: str | None = None
