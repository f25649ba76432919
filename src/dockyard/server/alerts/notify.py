"""Webhook delivery: one `deliveries` row per (alert, webhook, alert state), sent until the
receiver answers 2xx, with exponential backoff between attempts.

    pending ──2xx──▶ sent
       │ ▲
       │ └── error / non-2xx: attempts += 1, next_attempt_at = now + base · 2^(attempts-1)
       └──── attempts reach the maximum ──▶ failed

A delivery is claimed by a conditional UPDATE (still pending, due, and pushes its
`next_attempt_at` a lease ahead), so two servers never post the same one at once, and a
server that dies mid-post leaves it to be retried when the lease ends. The UNIQUE key of
`deliveries` is the de-duplication: each state change of an alert is announced once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session

from dockyard.config import ServerSettings
from dockyard.model.alerts import Alert, AlertState, WebhookFormat
from dockyard.server.alerts.records import alert_model
from dockyard.store import alerts
from dockyard.store.db import Database

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)  # longer than one post's timeout
MAX_BACKOFF = 600.0
BATCH = 50


@dataclass(frozen=True)
class Notice:
    delivery_id: int
    url: str
    format: WebhookFormat
    alert: Alert


def text(alert: Alert) -> str:
    value = "-" if alert.value is None else f"{alert.value:.3g}"
    head = "FIRING" if alert.state is AlertState.firing else "RESOLVED"
    return (f"[{head}] {alert.rule} ({alert.kind.value}) on {alert.subject_kind} "
            f"{alert.subject_name}: value {value}, threshold {alert.threshold:g}")


def body(alert: Alert, fmt: WebhookFormat) -> dict[str, Any]:
    """Slack-compatible `{"text"}` (IM bots accept it), or the alert as JSON plus `text`."""
    if fmt is WebhookFormat.slack:
        return {"text": text(alert)}
    return {"status": alert.state.value, "text": text(alert),
            "alert": alert.model_dump(mode="json")}


def backoff(attempts: int, base: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones."""
    return float(min(MAX_BACKOFF, base * 2 ** max(0, attempts - 1)))


def _claim(sess: Session, now: datetime) -> list[Notice]:
    notices = []
    for row in alerts.due_deliveries(sess, now, BATCH):
        claimed = alerts.claim_delivery(sess, row, now, LEASE)
        hook = alerts.webhook(sess, row.webhook_id)
        alert = alerts.alert(sess, row.alert_id)
        if not claimed or hook is None or alert is None:
            continue
        model = alert_model(sess, alert)
        model.state = AlertState(row.alert_state)  # what this delivery announces
        notices.append(Notice(row.id, hook.url, WebhookFormat(hook.format), model))
    return notices


class WebhookSender:
    def __init__(self, db: Database, settings: ServerSettings,
                 http: httpx.Client | None = None) -> None:
        self._db = db
        self._settings = settings
        self._http = http or httpx.Client(timeout=settings.webhook_timeout)

    def close(self) -> None:
        self._http.close()

    def deliver_due(self, now: datetime) -> int:
        """Post every due delivery once; returns how many were sent."""
        with self._db.session() as sess:
            notices = _claim(sess, now)
        sent = 0
        for notice in notices:
            error = self._post(notice)
            self._finish(notice, error, datetime.now(UTC))
            sent += error is None
        return sent

    def _post(self, notice: Notice) -> str | None:
        try:
            resp = self._http.post(notice.url, json=body(notice.alert, notice.format))
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:1000]
        if resp.is_success:
            return None
        return f"HTTP {resp.status_code}: {resp.text[:200]}"

    def _finish(self, notice: Notice, error: str | None, now: datetime) -> None:
        with self._db.session() as sess:
            row = alerts.delivery(sess, notice.delivery_id)
            if row is None:
                return
            row.last_error = error
            if error is None:
                row.state = "sent"
            elif row.attempts >= self._settings.webhook_max_attempts:
                row.state = "failed"
                log.warning("webhook %s: giving up after %d attempts: %s", notice.url,
                            row.attempts, error)
            else:
                delay = backoff(row.attempts, self._settings.webhook_retry_base)
                row.next_attempt_at = now + timedelta(seconds=delay)
                log.info("webhook %s: %s; retry in %.1fs", notice.url, error, delay)
