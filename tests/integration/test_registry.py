"""The cluster registry, for real: `image push` from the local engine, `image list`, and an
instance whose image the agent has to pull (progress shown while it pulls).

The session Dockyard runs its own docker-registry on a free port with its data under the test
home, so nothing here touches a user's registry; local tags made here are removed afterwards.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any
from urllib.parse import quote

import docker
import pytest

from dockyard.errors import InvalidRequest, NotFound
from tests.integration.dockyard_env import IMAGE, Dockyard

PULLED = "dytest/reg:1"
# A layer of its own (random bytes), so that the pull after `docker rmi` really downloads.
DOCKERFILE = (f"FROM {IMAGE}\n"
              'RUN ["/bin/sh", "-c", "head -c 2000000 /dev/urandom > /payload"]\n')


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def local_tags(dy: Dockyard, engine: docker.DockerClient) -> Iterator[list[str]]:
    """Tags the test makes on the local engine; removed afterwards (and their registry
    twins, should a push have left one)."""
    made: list[str] = []
    yield made
    twins = [f"{dy.registry}/{t}" for t in made if not t.startswith(dy.registry)]
    for tag in made + twins:
        with suppress(docker.errors.ImageNotFound):
            engine.images.remove(tag)


def registry_items(dy: Dockyard) -> dict[str, dict[str, Any]]:
    return {f"{i['name']}:{i['tag']}": i for i in dy.ok("image", "list", "--json").json()["items"]}


def test_push_then_list(dy: Dockyard, local_tags: list[str]) -> None:
    local_tags.append(f"{dy.registry}/{IMAGE}")  # nothing should be left; removed if so
    result = dy.ok("image", "push", IMAGE)
    assert f"{dy.registry}/{IMAGE}" in result.out
    item = registry_items(dy)[IMAGE]
    assert item["ref"] == f"{dy.registry}/{IMAGE}" and item["size"] > 100_000
    assert item["hosts"] == ["local"]
    with dy.api() as api:
        assert api.get(f"/v1/images/{IMAGE}")["ref"] == item["ref"]
    assert "dockyard/busybox" in dy.ok("image", "list").out
    assert dy.cli("image", "push", "dytest/nosuch:1").code != 0


def test_launch_pulls_from_the_registry(dy: Dockyard, engine: docker.DockerClient,
                                        local_tags: list[str]) -> None:
    local_tags.append(PULLED)
    engine.images.build(fileobj=io.BytesIO(DOCKERFILE.encode()), tag=PULLED, rm=True)
    dy.ok("image", "push", PULLED)
    engine.images.remove(PULLED)  # only the registry has it now
    assert PULLED in registry_items(dy)
    messages: list[str] = []
    try:
        launched = dy.ok("launch", PULLED, "regpull", "--no-wait", "--json").json()
        assert launched["image"] == f"{dy.registry}/{PULLED}"
        messages = _watch_until_running(dy, "regpull")
        with dy.api() as api:
            events = api.get("/v1/instances/regpull/events")["items"]
        kinds = [e["kind"] for e in events]
        assert "pull" in kinds and "pulled" in kinds, kinds
        assert any(m.startswith("pulling") for m in messages) or "pull" in kinds
        assert engine.images.get(f"{dy.registry}/{PULLED}")  # the agent pulled it
    finally:
        dy.cli("delete", "regpull", "--force")


def _watch_until_running(dy: Dockyard, name: str, timeout: float = 60) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with dy.api() as api:
        while time.monotonic() < deadline:
            inst = api.get(f"/v1/instances/{name}")
            if inst.get("message"):
                seen.append(inst["message"])
            if inst["state"] == "running":
                return seen
            assert inst["state"] == "creating", inst
            time.sleep(0.05)
    raise AssertionError(f"{name} not running after {timeout}s; messages {seen}")


def test_unknown_image_is_refused(dy: Dockyard) -> None:
    with dy.api() as api, pytest.raises(NotFound) as info:  # 404: unknown, as any object
        api.post("/v1/instances", {"name": "noimg", "image": "dytest/nosuch:1"})
    assert "neither in the registry" in info.value.message
    assert dy.cli("launch", "dytest/nosuch:1", "noimg").code != 0


@pytest.mark.parametrize("ref", ["%", "UPPER/case:1", "a..b:1", "x:bad tag"])
def test_show_and_delete_refuse_what_is_not_a_reference(dy: Dockyard, ref: str) -> None:
    """400 before the registry is asked: it answered a bad name with 400, which came back as
    502 (found by schemathesis with `GET /v1/images/%25`)."""
    for method in ("get", "delete"):
        with dy.api() as api, pytest.raises(InvalidRequest) as info:
            getattr(api, method)(f"/v1/images/{quote(ref, safe='/:')}")
        assert "not an image reference" in info.value.message, (method, ref)
