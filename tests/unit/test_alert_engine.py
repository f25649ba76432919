"""The alert engine on a real SQLite store, webhooks behind httpx's MockTransport: host down
→ event, alert and one delivery (retried after a 500, with backoff), host up → resolved."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from dockyard.config import ServerSettings
from dockyard.server.alerts.engine import AlertEngine, ensure_default_rules
from dockyard.server.alerts.notify import WebhookSender
from dockyard.server.bootstrap import init_store
from dockyard.store.db import Database
from dockyard.store.tables import AlertRow, AlertRuleRow, DeliveryRow, EventRow, HostRow, WebhookRow

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Database, ServerSettings]]:
    settings = ServerSettings(home=tmp_path, heartbeat_timeout=5, webhook_retry_base=2,
                              rss_for=2)
    db = Database(settings.db_url())
    init_store(db)
    ensure_default_rules(db, settings)
    ensure_default_rules(db, settings)  # idempotent
    with db.session() as sess:
        sess.add(HostRow(id="h1", name="local", version=0, inventory={}, reserved_cores=[],
                         labels={}, draining=False, state="up",
                         last_heartbeat=NOW - timedelta(seconds=10)))
        sess.add(WebhookRow(id="w1", url="http://hook.test/a", format="slack"))
    yield db, settings
    db.close()


def _kinds(db: Database) -> list[str]:
    with db.session() as sess:
        return list(sess.scalars(select(EventRow.kind).order_by(EventRow.id)))


def test_default_rules_follow_settings(env: tuple[Database, ServerSettings]) -> None:
    db, _ = env
    with db.session() as sess:
        rules = {r.kind: r for r in sess.scalars(select(AlertRuleRow))}
    assert set(rules) == {"oom", "memory_rss_ratio", "pids_ratio", "load_over_cores",
                          "host_down", "build_failed"}
    assert rules["memory_rss_ratio"].for_seconds == 2 and rules["pids_ratio"].threshold == 0.9


def test_host_down_alert_is_notified_once_with_retries(
        env: tuple[Database, ServerSettings]) -> None:
    db, settings = env
    bumps: list[int] = []
    engine = AlertEngine(db, settings, lambda: bumps.append(1))
    assert engine.evaluate_once(NOW) == 2  # host marked down + alert opened
    assert engine.evaluate_once(NOW + timedelta(seconds=1)) == 0  # nothing new: no duplicate
    assert _kinds(db) == ["host_down", "alert_firing"] and bumps == [1]

    answers = iter([500, 200])
    bodies: list[bytes] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(next(answers))

    sender = WebhookSender(db, settings, httpx.Client(transport=httpx.MockTransport(receiver)))
    assert sender.deliver_due(NOW) == 0  # 500: retry later
    assert sender.deliver_due(NOW + timedelta(seconds=1)) == 0  # not due yet (backoff 2 s)
    with db.session() as sess:
        delivery = sess.scalars(select(DeliveryRow)).one()
        due = delivery.next_attempt_at.replace(tzinfo=UTC)
    assert sender.deliver_due(due + timedelta(seconds=1)) == 1
    with db.session() as sess:
        delivery = sess.scalars(select(DeliveryRow)).one()
        assert (delivery.state, delivery.attempts) == ("sent", 2)
    assert len(bodies) == 2 and b"[FIRING]" in bodies[0]

    with db.session() as sess:  # heartbeats are back
        host = sess.get(HostRow, "h1")
        assert host is not None and host.state == "down"
        host.state, host.last_heartbeat = "up", NOW + timedelta(seconds=20)
    assert engine.evaluate_once(NOW + timedelta(seconds=21)) == 1
    with db.session() as sess:
        alert = sess.scalars(select(AlertRow)).one()
        assert alert.state == "resolved"
        states = sorted(d.alert_state for d in sess.scalars(select(DeliveryRow)))
    assert states == ["firing", "resolved"]
    sender.close()
