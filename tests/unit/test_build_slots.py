"""The per-host build limit with two servers on one PostgreSQL (issue #13): two build runners
(two servers' passes, each in its own thread and session) start builds of two repositories
on the one build host whose limit is 1. Each pass reads the running builds per host and then
waits (up to RENDEZVOUS seconds) for the other pass to have read them too, the interleaving
that let both see a free slot; with the build-start lock the second pass cannot read before
the first one's claim committed, so exactly one build runs and the other stays queued."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.config import ServerSettings
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store
from dockyard.server.build_runner import BuildRunner
from dockyard.server.build_secrets import SecretBox
from dockyard.server.context import ServerContext
from dockyard.store import builds as store
from dockyard.store import hosts as host_store
from tests.postgres import fresh_database

RENDEZVOUS = 3.0  # seconds a pass waits for the other one after reading the counts


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServerContext]:
    with fresh_database("buildslots") as url:
        settings = ServerSettings(home=tmp_path / "home", registry_url="http://127.0.0.1:1",
                                  database_url=url, build_host_parallel=1)
        app = create_app(settings)
        context: ServerContext = app.state.ctx
        try:
            yield context
        finally:
            context.db.close()


def _queue_two_builds(ctx: ServerContext) -> None:
    project = init_store(ctx.db)
    with ctx.db.session() as sess:
        host = host_store.add(sess, "builder", {})
        host.state, host.api_url = "up", "https://127.0.0.1:1"
        for name in ("one", "two"):
            repo = store.add_repo(sess, store.RepoRow(
                id=f"r-{name}", name=name, project_id=project, url="git://h/x.git",
                branch="main", dockerfile="Dockerfile", context=".", image=f"default/{name}",
                deploy=[], secret_enc="x", credentials_enc=None, timeout=None))
            store.queue(sess, repo, "main", "main", "manual")


def test_two_servers_never_start_more_builds_on_a_host_than_its_limit(
        ctx: ServerContext, monkeypatch: pytest.MonkeyPatch) -> None:
    _queue_two_builds(ctx)
    counted = store.builds_per_host
    barrier = threading.Barrier(2, timeout=RENDEZVOUS)
    seen: list[dict[str, int]] = []

    def counted_then_rendezvous(sess: store.Session) -> dict[str, int]:
        busy = counted(sess)
        seen.append(dict(busy))
        # both passes have read: the race, unless the lock prevents it (then the barrier
        # breaks: the other pass waits for the lock, or has already claimed)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return busy

    monkeypatch.setattr(store, "builds_per_host", counted_then_rendezvous)
    runners = [BuildRunner(ctx, SecretBox(ctx.settings.home)) for _ in range(2)]
    claimed: list[list[str]] = []
    errors: list[BaseException] = []

    def one_pass(runner: BuildRunner) -> None:
        try:
            claimed.append(runner.pass_once())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=one_pass, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(seen) == 2  # both passes read the counts
    with ctx.db.read() as sess:
        assert counted(sess) == {"builder": 1}
        assert len(store.queued(sess)) == 1
    assert sorted(len(c) for c in claimed) == [0, 1]
    assert seen[1] == {"builder": 1}  # the second pass saw the first one's claim
