"""Alert rules, alerts, webhooks and their deliveries as the API reads and changes them.

Scope: `visible_to=None` is an admin (everything); a project id sees the global rows (no
project) and its own. The alert loop (`server/alerts/`) reads the enabled rules and the firing
alerts here, and queues and claims webhook deliveries (see `server/alerts/notify.py`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, true, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from dockyard.errors import Conflict
from dockyard.model.alerts import AlertState
from dockyard.model.ids import new_id
from dockyard.store import rows
from dockyard.store.tables import AlertRow, AlertRuleRow, DeliveryRow, WebhookRow


def _visible(column: Any, visible_to: str | None) -> ColumnElement[bool]:
    if visible_to is None:
        return true()
    return column.is_(None) | (column == visible_to)  # type: ignore[no-any-return]


def alerts_page(sess: Session, after: int, limit: int, state: str | None,
                project_id: str | None) -> tuple[list[AlertRow], bool]:
    """Alerts with id > after in id order, of one state and one project when given; the bool
    says whether more follow."""
    return rows.after_id(sess, AlertRow, after, limit,
                         {"state": state, "project_id": project_id})


def rules(sess: Session, visible_to: str | None) -> list[AlertRuleRow]:
    return list(sess.scalars(select(AlertRuleRow)
                             .where(_visible(AlertRuleRow.project_id, visible_to))
                             .order_by(AlertRuleRow.name)))


def add_rule(sess: Session, *, name: str, kind: str, threshold: float, for_seconds: float,
             project_id: str | None) -> AlertRuleRow:
    """A user rule (enabled); 409 when the name is taken (also when a concurrent create won
    the UNIQUE(name) race)."""
    taken = Conflict(f"an alert rule named {name!r} already exists")
    if sess.scalar(select(AlertRuleRow.id).where(AlertRuleRow.name == name)):
        raise taken
    return rows.insert_unique(sess, AlertRuleRow(
        id=new_id(), name=name, kind=kind, threshold=threshold, for_seconds=for_seconds,
        project_id=project_id, enabled=True, builtin=False), taken)


def visible_rule(sess: Session, ref: str, visible_to: str | None) -> AlertRuleRow | None:
    """A rule by name or id among those `visible_to` sees."""
    return sess.scalar(select(AlertRuleRow).where(
        (AlertRuleRow.name == ref) | (AlertRuleRow.id == ref),
        _visible(AlertRuleRow.project_id, visible_to)))


def delete_rule(sess: Session, row: AlertRuleRow) -> None:
    """Delete the rule with its alerts and their deliveries."""
    alert_ids = list(sess.scalars(select(AlertRow.id).where(AlertRow.rule_id == row.id)))
    if alert_ids:
        sess.execute(delete(DeliveryRow).where(DeliveryRow.alert_id.in_(alert_ids)))
        sess.execute(delete(AlertRow).where(AlertRow.id.in_(alert_ids)))
    sess.delete(row)


def delivery_counts(sess: Session) -> dict[str, dict[str, int]]:
    """Webhook id → delivery state → how many."""
    counts: dict[str, dict[str, int]] = {}
    counted = sess.execute(select(DeliveryRow.webhook_id, DeliveryRow.state, func.count())
                           .group_by(DeliveryRow.webhook_id, DeliveryRow.state))
    for webhook_id, state, count in counted:
        counts.setdefault(webhook_id, {})[state] = int(count)
    return counts


def webhooks(sess: Session, visible_to: str | None) -> list[WebhookRow]:
    """Oldest first."""
    return list(sess.scalars(select(WebhookRow).where(_visible(WebhookRow.project_id,
                                                               visible_to))
                             .order_by(WebhookRow.created_at, WebhookRow.id)))


def add_webhook(sess: Session, url: str, fmt: str, project_id: str | None) -> WebhookRow:
    row = WebhookRow(id=new_id(), url=url, format=fmt, project_id=project_id)
    sess.add(row)
    sess.flush()
    return row


def webhook(sess: Session, webhook_id: str) -> WebhookRow | None:
    return sess.get(WebhookRow, webhook_id)


def delete_webhook(sess: Session, row: WebhookRow) -> None:
    """Delete the webhook; its pending deliveries are dropped."""
    sess.execute(delete(DeliveryRow).where(DeliveryRow.webhook_id == row.id))
    sess.delete(row)


# --- the alert loop (server/alerts/) -----------------------------------------------------------

def rule(sess: Session, rule_id: str) -> AlertRuleRow | None:
    return sess.get(AlertRuleRow, rule_id)


def enabled_rules(sess: Session) -> list[AlertRuleRow]:
    return list(sess.scalars(select(AlertRuleRow).where(AlertRuleRow.enabled.is_(True))
                             .order_by(AlertRuleRow.name)))


def ensure_builtin_rule(sess: Session, name: str, kind: str, threshold: float,
                        for_seconds: float) -> None:
    """The builtin rule of `kind`, created when missing (named `builtin-NAME` when a user rule
    holds NAME); an existing one takes `for_seconds` (it follows the settings)."""
    row = sess.scalar(select(AlertRuleRow).where(AlertRuleRow.builtin.is_(True),
                                                 AlertRuleRow.kind == kind))
    if row is None:
        taken = sess.scalar(select(AlertRuleRow.id).where(AlertRuleRow.name == name))
        sess.add(AlertRuleRow(id=new_id(), name=f"builtin-{name}" if taken else name,
                              kind=kind, threshold=threshold, for_seconds=for_seconds,
                              project_id=None, enabled=True, builtin=True))
    else:
        row.for_seconds = for_seconds


def firing(sess: Session) -> list[AlertRow]:
    return list(sess.scalars(select(AlertRow).where(AlertRow.state == AlertState.firing.value)))


def open_alert(sess: Session, rule_id: str, subject_kind: str, subject_id: str,
               subject_name: str, project_id: str | None, value: float | None,
               now: datetime) -> AlertRow:
    """A firing alert (flushed: a concurrent server's opening of the same one raises
    IntegrityError: `uq_alert_firing`, one firing alert per rule and subject)."""
    row = AlertRow(rule_id=rule_id, subject_kind=subject_kind, subject_id=subject_id,
                   subject_name=subject_name, project_id=project_id,
                   state=AlertState.firing.value, value=value, started_at=now)
    sess.add(row)
    sess.flush()
    return row


def alert(sess: Session, alert_id: int) -> AlertRow | None:
    return sess.get(AlertRow, alert_id)


def enqueue(sess: Session, row: AlertRow, now: datetime) -> int:
    """A pending delivery of the alert's current state to each webhook that sees it (the
    global ones, and its project's); returns how many."""
    query = select(WebhookRow)
    if row.project_id is not None:
        query = query.where((WebhookRow.project_id.is_(None))
                            | (WebhookRow.project_id == row.project_id))
    else:
        query = query.where(WebhookRow.project_id.is_(None))
    hooks = list(sess.scalars(query))
    for hook in hooks:
        sess.add(DeliveryRow(alert_id=row.id, webhook_id=hook.id, alert_state=row.state,
                             state="pending", attempts=0, next_attempt_at=now))
    return len(hooks)


def due_deliveries(sess: Session, now: datetime, batch: int) -> list[DeliveryRow]:
    """Pending deliveries whose time has come, oldest first, at most `batch`."""
    return list(sess.scalars(select(DeliveryRow)
                             .where(DeliveryRow.state == "pending",
                                    DeliveryRow.next_attempt_at <= now)
                             .order_by(DeliveryRow.id).limit(batch)))


def claim_delivery(sess: Session, row: DeliveryRow, now: datetime, lease: timedelta) -> bool:
    """Take the delivery for one attempt by a conditional UPDATE (still pending and due: one
    server wins), pushing its next attempt a `lease` ahead; True if this call took it."""
    claimed = sess.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id == row.id, DeliveryRow.state == "pending",
               DeliveryRow.next_attempt_at <= now)
        .values(attempts=DeliveryRow.attempts + 1, next_attempt_at=now + lease)
        .execution_options(synchronize_session=False))
    return getattr(claimed, "rowcount", 0) == 1


def delivery(sess: Session, delivery_id: int) -> DeliveryRow | None:
    return sess.get(DeliveryRow, delivery_id)
