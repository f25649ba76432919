"""Build events and the `build_failed` alert on the real app's store (SQLite, no lifespan):
the build runner records build_started / build_failed / build_cancelled in the event log of
the build's project; the builtin `build-failed` rule fires on a repository whose last build
failed (one webhook delivery queued for it), counts failures since the last success (a
cancelled build neither counts nor resolves), and resolves when a build succeeds."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from dockyard.config import ServerSettings
from dockyard.server.alerts.engine import AlertEngine, ensure_default_rules
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store
from dockyard.server.build_runner import BuildRunner
from dockyard.server.context import ServerContext
from dockyard.store import builds as store
from dockyard.store.tables import AlertRow, DeliveryRow, EventRow, WebhookRow

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
COUNT = itertools.count()


@dataclass
class Env:
    ctx: ServerContext
    runner: BuildRunner
    project: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    settings = ServerSettings(home=tmp_path_factory.mktemp("bev") / "home",
                              registry_url="http://127.0.0.1:1")
    app = create_app(settings)
    ctx: ServerContext = app.state.ctx
    project = init_store(ctx.db)
    ensure_default_rules(ctx.db, settings)
    with ctx.db.session() as sess:
        sess.add(WebhookRow(id="w1", url="http://hook.test/a", format="generic",
                            project_id=project))
    yield Env(ctx, app.state.builds, project)
    ctx.db.close()


def _repo(env: Env, name: str) -> store.RepoRow:
    with env.ctx.db.session() as sess:
        return store.add_repo(sess, store.RepoRow(
            id=f"r-{name}", name=name, project_id=env.project, url="git://h/x.git",
            branch="main", dockerfile="Dockerfile", context=".", image=f"default/{name}",
            deploy=[], secret_enc="x", credentials_enc=None, timeout=None))


def _ended(env: Env, repo: store.RepoRow, state: str) -> str:
    """A build of `repo` taken through queued → running → `state`."""
    with env.ctx.db.session() as sess:
        row = store.queue(sess, repo, "main", "main", "manual")
        assert store.claim(sess, row)
        assert store.finish(sess, row.id, state, error=None if state == "succeeded" else "x")
        return row.id


def _events(env: Env) -> list[tuple[str, str | None, str]]:
    with env.ctx.db.read() as sess:
        return [(r.kind, r.project_id, r.message) for r in sess.scalars(
            select(EventRow).order_by(EventRow.id))]


def _alerts(env: Env, name: str) -> list[tuple[str, str, str, float | None]]:
    with env.ctx.db.read() as sess:
        return [(r.subject_kind, r.subject_name, r.state, r.value) for r in sess.scalars(
            select(AlertRow).where(AlertRow.subject_name == name).order_by(AlertRow.id))]


def test_the_runner_records_build_events(env: Env) -> None:
    repo = _repo(env, "events")
    with env.ctx.db.session() as sess:
        older = store.queue(sess, repo, "main", "main", "webhook").id
        newer = store.queue(sess, repo, "main", "main", "webhook").id
    assert env.runner.pass_once() == []  # the older one is superseded; no host is up
    with env.ctx.db.session() as sess:
        assert store.build(sess, None, newer).state == "queued"  # it waits for a host
        assert store.claim(sess, store.build(sess, None, newer), "gone")
    env.runner.execute(newer)  # its host is not there: it fails, with its event
    with env.ctx.db.read() as sess:
        assert store.build(sess, None, newer).state == "failed"
    mine = [event for event in _events(env) if " of events (" in event[2]]
    kinds = [(kind, project) for kind, project, _ in mine]
    assert kinds == [("build_cancelled", env.project), ("build_failed", env.project)]
    cancelled, failed = (text for _, _, text in mine)
    assert cancelled == f"build {older} of events (main): superseded by build {newer}"
    assert failed == f"build {newer} of events (main): failed: its build host gone is gone"


def test_build_failed_alert_fires_counts_and_resolves(env: Env) -> None:
    repo = _repo(env, "shop")
    _repo(env, "quiet")
    engine = AlertEngine(env.ctx.db, env.ctx.settings, lambda: None)
    _ended(env, repo, "succeeded")
    engine.evaluate_once(NOW)  # (another test's repository may fire here)
    assert _alerts(env, "shop") == []
    _ended(env, repo, "failed")
    engine.evaluate_once(NOW)
    assert _alerts(env, "shop") == [("repo", "shop", "firing", 1.0)]
    _ended(env, repo, "failed")
    _ended(env, repo, "cancelled")  # neither counts nor resolves
    engine.evaluate_once(NOW)
    assert _alerts(env, "shop") == [("repo", "shop", "firing", 2.0)]
    _ended(env, repo, "succeeded")
    engine.evaluate_once(NOW)
    assert _alerts(env, "shop") == [("repo", "shop", "resolved", 0.0)]
    alert_events = [(kind, project) for kind, project, text in _events(env)
                    if kind.startswith("alert_") and "repo shop:" in text]
    assert alert_events == [("alert_firing", env.project), ("alert_resolved", env.project)]
    with env.ctx.db.read() as sess:  # each change notified once to the project's webhook
        shop = sess.scalars(select(AlertRow.id).where(AlertRow.subject_name == "shop"))
        deliveries = [(d.webhook_id, d.alert_state) for d in sess.scalars(
            select(DeliveryRow).where(DeliveryRow.alert_id.in_(list(shop)))
            .order_by(DeliveryRow.id))]
    assert deliveries == [("w1", "firing"), ("w1", "resolved")]


@pytest.mark.parametrize(("states", "streak"), [
    ([], None),
    (["succeeded"], None),
    (["failed"], 1),
    (["failed", "failed", "cancelled"], 2),
    (["failed", "succeeded", "failed"], 1),
    (["failed", "failed", "succeeded"], None),
])
def test_failure_streaks(env: Env, states: list[str], streak: int | None) -> None:
    repo = _repo(env, f"streak-{next(COUNT)}")
    for state in states:
        _ended(env, repo, state)
    with env.ctx.db.read() as sess:
        assert store.failure_streaks(sess).get(repo.id) == streak
