"""The registry behind Dockyard's tokens, for real: the server's `/v2/` with `docker login`,
`docker push` and `docker pull` of the local engine (which skips certificate checks for
127.0.0.0/8, so the server's TLS with its own cluster CA needs no set-up here), and the naming
rule of server/image_access.py in the proxy, in `/v1/images` and at launch.

Project A's member pushes A/app:1; project B's member neither lists, pulls nor launches it;
both read the shared dockyard/busybox; a member never overwrites it. Docker credentials live
in a throw-away client config per project; local tags made here are removed afterwards.
"""

from __future__ import annotations

import base64
import io
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest

from tests.integration.dockyard_env import IMAGE, Dockyard
from tests.integration.test_isolation import Api, _member, _suffix

DOCKERFILE = (f"FROM {IMAGE}\n"
              'RUN ["/bin/sh", "-c", "head -c 300000 /dev/urandom > /payload"]\n')


@dataclass
class Tenant:
    project: str
    api: Api
    docker_config: Path

    def docker(self, dy: Dockyard, *args: str, stdin: str | None = None
               ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "--config", str(self.docker_config), *args],
                              input=stdin, capture_output=True, text=True, timeout=120,
                              check=False)

    def v2(self, dy: Dockyard, path: str, method: str = "GET") -> httpx.Response:
        return httpx.request(method, f"{dy.url}/v2/{path}", auth=("user", self.api.token),
                             timeout=30, verify=dy.verify)


@pytest.fixture(scope="module")
def admin(dy: Dockyard) -> Api:
    return Api(dy.url, dy.token(), dy.verify)


@pytest.fixture(scope="module")
def tenants(dy: Dockyard, admin: Api, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Tenant, Tenant]]:
    """Projects A and B with a member each, logged in to the registry with `docker login`;
    the shared base image in the registry (pushed by the admin)."""
    sfx = _suffix()
    made = []
    for letter in ("a", "b"):
        project = f"reg{letter}-{sfx}"
        admin.ok("POST", "/v1/projects", {"name": project})
        tenant = Tenant(project, _member(admin, project),
                        tmp_path_factory.mktemp(f"docker-{letter}"))
        login = tenant.docker(dy, "login", "-u", f"someone-{letter}", "--password-stdin",
                              dy.registry, stdin=tenant.api.token)
        assert login.returncode == 0 and "Login Succeeded" in login.stdout, login.stderr
        made.append(tenant)
    dy.ok("image", "push", IMAGE)
    yield made[0], made[1]


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


def test_anonymous_and_wrong_credentials_get_a_challenge(dy: Dockyard, admin: Api) -> None:
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"u:dy_wrong").decode()},
                    {"Authorization": "Bearer dy_wrong"}, {"Authorization": "Basic !!"}):
        for path in ("", "_catalog", "dockyard/busybox/manifests/latest"):
            resp = httpx.get(f"{dy.url}/v2/{path}", headers=headers, timeout=30,
                             verify=dy.verify)
            assert resp.status_code == 401, (path, headers, resp.text)
            assert resp.headers["www-authenticate"].startswith('Basic realm="')
            assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert httpx.get(f"{dy.url}/v2/", auth=("admin", admin.token), timeout=30,
                     verify=dy.verify).status_code == 200
    # the proxy is not part of the documented /v1 API
    assert not [p for p in admin.ok("GET", "/openapi.json")["paths"] if p.startswith("/v2")]


def test_a_project_sees_only_its_own_images(dy: Dockyard, tenants: tuple[Tenant, Tenant],
                                            engine: docker.DockerClient) -> None:
    a, b = tenants
    ref = f"{dy.registry}/{a.project}/app:1"
    engine.images.build(fileobj=io.BytesIO(DOCKERFILE.encode()), tag=ref, rm=True)
    try:
        pushed = a.docker(dy, "push", ref)
        assert pushed.returncode == 0, pushed.stderr
        name = f"{a.project}/app"
        # image list: A sees its image and the shared one, B only the shared one
        a_names = {i["name"] for i in a.api.ok("GET", "/v1/images")["items"]}
        b_names = {i["name"] for i in b.api.ok("GET", "/v1/images")["items"]}
        assert {name, "dockyard/busybox"} <= a_names
        assert "dockyard/busybox" in b_names and name not in b_names
        assert b.api.call("GET", f"/v1/images/{name}:1").status_code == 404
        # the registry API: the same rule
        assert name in a.v2(dy, "_catalog").json()["repositories"]
        assert name not in b.v2(dy, "_catalog").json()["repositories"]
        assert "dockyard/busybox" in b.v2(dy, "_catalog").json()["repositories"]
        assert a.v2(dy, f"{name}/manifests/1", "HEAD").status_code == 200
        for path in (f"{name}/manifests/1", f"{name}/tags/list"):
            denied = b.v2(dy, path)
            assert denied.status_code == 404 and denied.json()["errors"][0]["code"] == \
                "NAME_UNKNOWN"
        assert b.v2(dy, "dockyard/busybox/manifests/latest", "HEAD").status_code == 200
        # a real pull: A's works, B's is refused
        engine.images.remove(ref)
        refused = b.docker(dy, "pull", ref)
        assert refused.returncode != 0
        assert "not known" in refused.stderr or "not found" in refused.stderr, refused.stderr
        pulled = a.docker(dy, "pull", ref)
        assert pulled.returncode == 0, pulled.stderr
        _launches(a, b, f"{name}:1")
        # A deletes its own image; B cannot, not even seeing it
        assert b.api.call("DELETE", f"/v1/images/{name}:1").status_code == 404
        assert a.api.call("DELETE", f"/v1/images/{name}:1").status_code == 204
    finally:
        with suppress(docker.errors.ImageNotFound):
            engine.images.remove(ref)


def _launches(a: Tenant, b: Tenant, image: str) -> None:
    """B's launch of A's image is 404 like any other object of A; both launch the shared
    busybox from the registry."""
    stranger = b.api.call("POST", "/v1/instances", {"name": "regb-steal", "image": image})
    assert stranger.status_code == 404, stranger.text
    for tenant, launched in ((a, image), (a, IMAGE), (b, IMAGE)):
        inst = tenant.api.ok("POST", "/v1/instances", {
            "name": "reg-inst", "image": launched, "limits": {"memory": "32M"}}, wait="true")
        try:
            assert inst["state"] == "running" and inst["image"].endswith(launched), inst
        finally:
            tenant.api.ok("DELETE", "/v1/instances/reg-inst", force="true", wait="true")


def test_a_member_never_writes_a_shared_image(dy: Dockyard,
                                             tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    shared = f"{dy.registry}/{IMAGE}"
    subprocess.run(["docker", "tag", IMAGE, shared], check=True)
    try:
        pushed = a.docker(dy, "push", shared)
        assert pushed.returncode != 0 and "denied" in pushed.stderr, pushed.stderr
    finally:
        subprocess.run(["docker", "rmi", shared], capture_output=True, check=False)
    upload = a.v2(dy, "dockyard/busybox/blobs/uploads/", "POST")
    assert upload.status_code == 403 and upload.json()["errors"][0]["code"] == "DENIED"
    assert a.api.call("DELETE", f"/v1/images/{IMAGE}").status_code == 403
    assert a.api.call("POST", "/v1/images/push", {"source": IMAGE}).status_code == 403
    # another project's namespace does not exist for B; snapshots are written by agents only
    assert b.api.call("POST", "/v1/images/push",
                      {"source": f"{a.project}/app:1"}).status_code == 404
    assert b.v2(dy, f"{a.project}/x/blobs/uploads/", "POST").status_code == 404
    assert a.v2(dy, "snapshot/x-y/blobs/uploads/", "POST").status_code == 404
    # no project may take a shared or system namespace
    for reserved in ("dockyard", "snapshot", "migrate"):
        resp = Api(dy.url, dy.token(), dy.verify).call("POST", "/v1/projects",
                                                        {"name": reserved})
        assert resp.status_code == 422, resp.text
