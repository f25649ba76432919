"""Concurrent force-deletes converge on their own (issue #3).

Each delete's sync lists the containers its instance set aside (fencing) while the other
deletes remove theirs. A container that vanished between that list and its inspect used to fail
the whole sync: the agent reported `error`, nothing retried it, and the instance stayed
`deleting` until the agent's next full resync. The Dockyard here resyncs only every 10 minutes,
so a delete that leans on the resync cannot finish within the test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dockyard.adapters.docker_engine import DockerEngine
from dockyard.client import ApiClient
from dockyard.errors import DockyardError
from dockyard.model import ids
from tests.integration.dockyard_env import IMAGE, Dockyard, leaks, make_dockyard

COUNT = 30
DELETE_WITHIN = 60.0  # seconds for all of them; the resync would come after 600


@pytest.fixture(scope="module")
def calm() -> Iterator[Dockyard]:
    env = make_dockyard()
    env.resync_interval = 600.0
    try:
        env.start()
        yield env
    finally:
        env.cleanup()


def test_list_owned_leaves_out_a_container_removed_after_the_list(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The race itself, made certain: a container goes between `docker ps` and its inspect."""
    cluster = f"test-{uuid.uuid4()}"
    engine = DockerEngine()
    made = [engine.api.create_container(IMAGE, name=f"dy-list-{cluster[5:13]}-{n}",
                                        labels={ids.LABEL_CLUSTER: cluster,
                                                ids.LABEL_INSTANCE: f"i{n}"})["Id"]
            for n in range(2)]
    listing = engine.api.containers

    def list_then_remove_one(*args: Any, **kwargs: Any) -> Any:
        found = listing(*args, **kwargs)
        engine.remove(made[0])  # a no-op once it is gone
        return found

    try:
        monkeypatch.setattr(engine.api, "containers", list_then_remove_one)
        assert [c.id for c in engine.list_owned(cluster)] == [made[1]]
        assert [c.id for c in engine.list_owned(cluster, "i1")] == [made[1]]
        assert engine.list_owned(cluster, "i0") == []
    finally:
        monkeypatch.undo()
        for container_id in made:
            engine.remove(container_id)
        engine.close()


def _each(env: Dockyard, call: str, names: list[str]) -> list[Any]:
    """`call` for every name at once, each from its own client; an error is returned."""
    def one(name: str) -> Any:
        with ApiClient(env.url, env.token(), ca=env.ca, timeout=DELETE_WITHIN if call == "delete"
                       else 120) as api:
            try:
                if call == "create":
                    return api.post("/v1/instances", {"name": name, "image": IMAGE},
                                    wait="true")
                return api.delete(f"/v1/instances/{name}", force="true", wait="true")
            except DockyardError as exc:
                return f"{call} {name}: {exc.message}"
    with ThreadPoolExecutor(len(names)) as pool:
        return list(pool.map(one, names))


def test_concurrent_force_deletes_converge_without_resync(calm: Dockyard) -> None:
    names = [f"burst{i}" for i in range(COUNT)]
    created = _each(calm, "create", names)
    assert [c for c in created if not isinstance(c, dict) or c["state"] != "running"] == []
    started = time.monotonic()
    deleted = _each(calm, "delete", names)
    took = time.monotonic() - started
    assert [d for d in deleted if not isinstance(d, dict) or not d["deleted"]] == []
    assert took < DELETE_WITHIN, f"{COUNT} deletes took {took:.1f}s"
    with calm.api() as api:
        assert api.get("/v1/instances")["items"] == []
    assert calm.containers() == []
    assert leaks(calm) == []
