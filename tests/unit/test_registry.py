"""The registry seam: references, the registry client (httpx MockTransport), the pull meter,
and the reconciler pulling a registry image it lacks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.agent.api import push_target
from dockyard.agent.hostfiles import InstanceFiles
from dockyard.agent.pull import PullMeter
from dockyard.agent.reconciler import Reconciler
from dockyard.errors import InvalidRequest, NotFound
from dockyard.model.agent import DesiredInstance, ObservedState
from dockyard.model.image import names_registry, split_ref
from dockyard.server.registry import RegistryClient
from tests.unit.fakes import FakeEngine, FakeNetwork
from tests.unit.test_reconciler import desired


@pytest.mark.parametrize(("ref", "parts"), [
    ("busybox", ("", "busybox", "latest")),
    ("dockyard/busybox:latest", ("", "dockyard/busybox", "latest")),
    ("dytest/reg:1", ("", "dytest/reg", "1")),
    ("127.0.0.1:5000/dytest/reg:1", ("127.0.0.1:5000", "dytest/reg", "1")),
    ("localhost/x", ("localhost", "x", "latest")),
    ("reg.example:5000/a/b", ("reg.example:5000", "a/b", "latest")),
])
def test_split_ref(ref: str, parts: tuple[str, str, str]) -> None:
    assert split_ref(ref) == parts
    assert names_registry(ref) == bool(parts[0])


def test_push_target() -> None:
    assert push_target("dytest/reg:1", "127.0.0.1:5000") == "127.0.0.1:5000/dytest/reg:1"
    assert push_target("busybox", "127.0.0.1:5000") == "127.0.0.1:5000/busybox:latest"
    with pytest.raises(InvalidRequest):
        push_target("other:5000/x:1", "127.0.0.1:5000")
    with pytest.raises(InvalidRequest):
        push_target("x", "")


MANIFEST = {"schemaVersion": 2, "config": {"size": 100},
            "layers": [{"size": 1000}, {"size": 24}]}


def fake_registry(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/v2/_catalog":
        return httpx.Response(200, json={"repositories": ["dytest/reg", "gone"]})
    if path == "/v2/dytest/reg/tags/list":
        return httpx.Response(200, json={"name": "dytest/reg", "tags": ["2", "1"]})
    if path == "/v2/gone/tags/list":
        return httpx.Response(200, json={"name": "gone", "tags": None})
    if path.startswith("/v2/dytest/reg/manifests/"):
        assert "manifest.v2+json" in request.headers["accept"]
        return httpx.Response(200, json=MANIFEST)
    return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]})


@pytest.fixture
def registry() -> Iterator[RegistryClient]:
    client = RegistryClient("http://127.0.0.1:5999", transport=httpx.MockTransport(fake_registry))
    yield client
    client.close()


def test_images_with_sizes(registry: RegistryClient) -> None:
    images = registry.images()
    assert [(i.name, i.tag, i.ref, i.size) for i in images] == [
        ("dytest/reg", "1", "127.0.0.1:5999/dytest/reg:1", 1124),
        ("dytest/reg", "2", "127.0.0.1:5999/dytest/reg:2", 1124)]


def test_resolve(registry: RegistryClient) -> None:
    assert registry.resolve("dytest/reg:1") == "127.0.0.1:5999/dytest/reg:1"
    assert registry.resolve("127.0.0.1:5999/dytest/reg:1") == "127.0.0.1:5999/dytest/reg:1"
    assert registry.resolve("dockyard/busybox:latest") is None
    assert registry.resolve("other:5000/dytest/reg:1") is None


def test_unreachable_registry_holds_nothing() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = RegistryClient("http://127.0.0.1:5999", transport=httpx.MockTransport(refuse))
    assert client.resolve("dytest/reg:1") is None
    client.close()


def test_pull_meter_adds_layers_and_throttles() -> None:
    now = [0.0]
    lines: list[str] = []
    meter = PullMeter(lines.append, interval=0.5, clock=lambda: now[0])
    meter.feed({"status": "Downloading", "id": "a", "progressDetail": {"current": 512,
                                                                         "total": 1024}})
    meter.feed({"status": "Downloading", "id": "b", "progressDetail": {"current": 0,
                                                                         "total": 1024}})
    assert lines == ["pulling 50% (512B of 1K)"]  # the second within 0.5 s: not reported
    now[0] = 1.0
    meter.feed({"status": "Download complete", "id": "a"})
    assert lines[-1] == "pulling 50% (1K of 2K)"
    meter.feed({"status": "Waiting", "id": "c"})  # nothing to add up: no report
    assert len(lines) == 2
    quiet = PullMeter(lines.append, clock=lambda: 9.0)
    quiet.feed({"status": "Pull complete", "id": "x"})  # no size known: nothing to say
    assert len(lines) == 2


class PullingEngine(FakeEngine):
    def __init__(self, in_registry: set[str]) -> None:
        super().__init__()
        self.registry = in_registry

    def image_exists(self, ref: str) -> bool:
        return ref in self.images

    def pull(self, ref: str) -> Iterator[dict[str, Any]]:
        self.calls.append(f"pull {ref}")
        if ref not in self.registry:
            raise NotFound(f"pull {ref}: manifest unknown")
        yield {"status": "Downloading", "id": "l1", "progressDetail": {"current": 5,
                                                                        "total": 10}}
        yield {"status": "Pull complete", "id": "l1"}
        self.images.add(ref)


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def report(self, d: DesiredInstance, observed: ObservedState) -> None:
        self.lines.append(f"{observed.state}: {observed.message}")

    def event(self, d: DesiredInstance, kind: str, message: str) -> None:
        self.lines.append(f"event {kind}")


REF = "127.0.0.1:5000/dytest/reg:1"


def reconciler(tmp_path: Path, engine: PullingEngine, progress: Recorder) -> Reconciler:
    return Reconciler(engine, FakeNetwork(), InstanceFiles(tmp_path), "c1",  # type: ignore[arg-type]
                      progress=progress)


def test_missing_registry_image_is_pulled_with_progress(tmp_path: Path) -> None:
    engine, progress = PullingEngine({REF}), Recorder()
    obs = reconciler(tmp_path, engine, progress).sync(desired(image=REF))
    assert obs.state == "running"
    assert engine.calls[:2] == [f"pull {REF}", "create dy-abc123"]
    assert progress.lines == ["event pull", f"creating: pulling {REF}",
                              "creating: pulling 50% (5B of 10B)", "event pulled"]


def test_present_or_local_image_is_not_pulled(tmp_path: Path) -> None:
    engine = PullingEngine(set())
    engine.images.add(REF)
    rec = reconciler(tmp_path, engine, Recorder())
    assert rec.sync(desired(image=REF)).state == "running"
    assert rec.sync(desired(id="def456", image="img")).state == "running"
    assert not any(c.startswith("pull") for c in engine.calls)


def test_failed_pull_on_first_create_rolls_back(tmp_path: Path) -> None:
    engine = PullingEngine(set())
    obs = reconciler(tmp_path, engine, Recorder()).sync(desired(image=REF))
    assert obs.state == "deleted" and obs.failed_create
    assert "manifest unknown" in (obs.message or "")
    assert engine.containers == {}


def test_push_lines_are_json() -> None:
    from dockyard.agent.api import push_lines

    class Pusher:
        def push(self, source: str, target: str) -> Iterator[dict[str, Any]]:
            yield {"status": "Pushing", "id": "l1", "progressDetail": {"current": 1, "total": 2}}

    lines = [json.loads(b) for b in push_lines(Pusher(), "a:1", "r:5000/a:1")]  # type: ignore[arg-type]
    assert lines == [{"status": "Pushing", "id": "l1", "current": 1, "total": 2},
                     {"status": "pushed", "ref": "r:5000/a:1"}]
