"""Integration fixtures: one real Dockyard for the integration package (stopped after its last
test, not left running under the tests that follow), and a leak check after every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dockyard.adapters.docker_engine import DockerEngine
from dockyard.adapters.machine_image import build_machine_image
from dockyard.config import DEFAULT_IMAGE_CACHE
from tests.integration.dockerd_env import PrivateDockerd, make_dockerd
from tests.integration.dockyard_env import Dockyard, leaks, make_dockyard
from tests.integration.split_env import SplitDockyard, make_split


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def machine_image() -> str:
    """dockyard/machine:bookworm, built once per machine (debootstrap tree cached)."""
    engine = DockerEngine(timeout=300)
    try:
        return build_machine_image(engine, DEFAULT_IMAGE_CACHE)  # no-op when the tag exists
    finally:
        engine.close()


@pytest.fixture(scope="package")
def dy() -> Iterator[Dockyard]:
    env = make_dockyard()
    try:
        env.start()
        yield env
    finally:
        env.cleanup()


@pytest.fixture(autouse=True)
def assert_no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test that used the session Dockyard: no container, veth, IP, core,
    operation or agent file without an instance."""
    yield
    for name in ("dy", "split"):
        if name in request.fixturenames:
            env: Dockyard = request.getfixturevalue(name)
            if env.proc is not None:
                assert leaks(env) == []


# A Dockyard (server and agent as separate processes) on its own dockerd, for the modules that
# stop or restart the engine; one per module that asks for `split` (modules may define their
# own `split` instead).
@pytest.fixture(scope="module")
def daemon() -> Iterator[PrivateDockerd]:
    d = make_dockerd()
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def split(daemon: PrivateDockerd) -> Iterator[SplitDockyard]:
    env = make_split(docker_url=daemon.url)
    try:
        env.start()
        yield env
    finally:
        env.cleanup()
