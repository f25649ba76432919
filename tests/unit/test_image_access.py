"""The registry's naming rule (server/image_access.py) and the proxy's path parsing, as tables."""

from __future__ import annotations

import pytest

from dockyard.errors import Forbidden, NotFound
from dockyard.model.tenancy import ProjectCreate
from dockyard.server.auth import Caller
from dockyard.server.image_access import can_read, check_write, classify
from dockyard.server.registry_proxy import ROUTE

PROJECTS = {"team-a": "pa", "team-b": "pb"}
MEMBER_A = Caller(role="member", project_id="pa", host_name=None)
ADMIN = Caller(role="admin", project_id="p0", host_name=None)
AGENT = Caller(role="host", project_id=None, host_name="h1")


@pytest.mark.parametrize(("name", "owner", "system"), [
    ("team-a/app", "pa", False),
    ("team-a/deep/app", "pa", False),
    ("team-b/app", "pb", False),
    ("dockyard/busybox", None, False),
    ("busybox", None, False),
    ("team-c/app", None, False),  # no such project: shared
    ("team-a", None, False),  # a bare name is no namespace
    ("snapshot/pa-web", "pa", True),
    ("migrate/pb-web", "pb", True),
])
def test_classify(name: str, owner: str | None, system: bool) -> None:
    repo = classify(name, PROJECTS)
    assert (repo.owner, repo.system) == (owner, system)


@pytest.mark.parametrize(("name", "read", "write"), [
    ("team-a/app", True, None),
    ("team-b/app", False, NotFound),
    ("dockyard/busybox", True, Forbidden),
    ("snapshot/pa-web", True, Forbidden),
    ("snapshot/pb-web", False, NotFound),
])
def test_member_rights(name: str, read: bool, write: type[Exception] | None) -> None:
    repo = classify(name, PROJECTS)
    assert can_read(MEMBER_A, repo) is read
    if write is None:
        check_write(MEMBER_A, repo)
    else:
        with pytest.raises(write):
            check_write(MEMBER_A, repo)
    for powerful in (ADMIN, AGENT):
        assert can_read(powerful, repo)
        check_write(powerful, repo)


@pytest.mark.parametrize(("path", "name", "kind"), [
    ("team-a/app/manifests/1", "team-a/app", "manifests"),
    ("team-a/app/blobs/uploads/", "team-a/app", "blobs"),
    ("team-a/app/blobs/uploads/abc", "team-a/app", "blobs"),
    ("a/tags/x/tags/list", "a/tags/x", "tags"),
])
def test_proxy_routes(path: str, name: str, kind: str) -> None:
    match = ROUTE.match(path)
    assert match is not None and (match["name"], match["kind"]) == (name, kind)


@pytest.mark.parametrize("name", ["dockyard", "snapshot", "migrate"])
def test_reserved_project_names(name: str) -> None:
    with pytest.raises(ValueError, match="shared or system"):
        ProjectCreate(name=name)
