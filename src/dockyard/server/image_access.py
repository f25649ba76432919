"""Which project a registry repository belongs to, and who may read or write it.

    snapshot/<project id>-…, migrate/<project id>-…   that project's; written only by agents
                                                       (host tokens, for the server) and admins
    <project name>/…                                  that project's: its members read and write
    dockyard/… and every other name                   shared: every project reads, admins write

Admins and agents read and write every repository. Another project's repository answers 404
(as if it did not exist); a shared one that a member may not write answers 403. The rule is the
same in the registry proxy (`/v2/`), `/v1/images` and at launch; `RESERVED_NAMESPACES` can never
be project names, so no project owns the shared `dockyard/` or a system namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from dockyard.errors import Forbidden, NotFound
from dockyard.model.image import RESERVED_NAMESPACES, split_ref
from dockyard.server.auth import Caller
from dockyard.store import projects

SYSTEM_PREFIXES = ("snapshot/", "migrate/")  # server/snapshots.py, server/migrate.py


@dataclass(frozen=True)
class Repo:
    name: str
    owner: str | None  # project id; None: shared
    system: bool = False  # written by the server's agents only

    def readable_in(self, project_id: str | None) -> bool:
        return self.owner is None or self.owner == project_id


def project_names(sess: Session) -> dict[str, str]:
    """Project name → id."""
    return projects.ids_by_name(sess)


def classify(name: str, projects: dict[str, str]) -> Repo:
    for prefix in SYSTEM_PREFIXES:
        if name.startswith(prefix):
            return Repo(name, owner=name[len(prefix):].partition("-")[0], system=True)
    first, slash, _ = name.partition("/")
    if slash and first not in RESERVED_NAMESPACES and first in projects:
        return Repo(name, owner=projects[first])
    return Repo(name, owner=None)


def _powerful(caller: Caller) -> bool:
    return caller.role in ("admin", "host")


def can_read(caller: Caller, repo: Repo) -> bool:
    return _powerful(caller) or repo.readable_in(caller.project_id)


def check_read(caller: Caller, repo: Repo) -> None:
    if not can_read(caller, repo):
        raise NotFound(f"image {repo.name} not found")


def check_write(caller: Caller, repo: Repo) -> None:
    """404 for another project's repository, 403 for a shared or system one (members)."""
    if _powerful(caller):
        return
    check_read(caller, repo)
    if repo.owner is None or repo.system:
        raise Forbidden(f"only an admin may write {repo.name} (a project's own images are "
                        f"named PROJECT/NAME)")


def check_launch(sess: Session, project_id: str, ref: str, registry: str) -> None:
    """An instance of `project_id` may use `ref` when it names a shared repository or one of
    its project's (images of other registries are left to the host's engine)."""
    named, name, _ = split_ref(ref)
    if named not in ("", registry):
        return
    if not classify(name, project_names(sess)).readable_in(project_id):
        raise NotFound(f"image {ref} not found")
