"""Rows of the alert tables as API models."""

from __future__ import annotations

from sqlalchemy.orm import Session

from dockyard.model.alerts import Alert, AlertRule, AlertState, RuleKind, Webhook, WebhookFormat
from dockyard.store import alerts, projects
from dockyard.store.records import as_utc
from dockyard.store.tables import AlertRow, AlertRuleRow, WebhookRow


def _project(sess: Session, project_id: str | None) -> str | None:
    row = projects.get(sess, project_id)
    return row.name if row else None


def rule_model(sess: Session, row: AlertRuleRow) -> AlertRule:
    return AlertRule(id=row.id, name=row.name, kind=RuleKind(row.kind), threshold=row.threshold,
                     for_seconds=row.for_seconds, project=_project(sess, row.project_id),
                     enabled=row.enabled, builtin=row.builtin)


def alert_model(sess: Session, row: AlertRow) -> Alert:
    rule = alerts.rule(sess, row.rule_id)
    return Alert(id=row.id, rule=rule.name if rule else row.rule_id, rule_id=row.rule_id,
                 kind=RuleKind(rule.kind) if rule else RuleKind.oom,
                 subject_kind=row.subject_kind, subject_id=row.subject_id,
                 subject_name=row.subject_name, project=_project(sess, row.project_id),
                 state=AlertState(row.state), value=row.value,
                 threshold=rule.threshold if rule else 0.0, started_at=as_utc(row.started_at),
                 resolved_at=as_utc(row.resolved_at) if row.resolved_at else None)


def webhook_model(sess: Session, row: WebhookRow, counts: dict[str, int]) -> Webhook:
    return Webhook(id=row.id, url=row.url, format=WebhookFormat(row.format),
                   project=_project(sess, row.project_id), created_at=as_utc(row.created_at),
                   delivered=counts.get("sent", 0), failed=counts.get("failed", 0),
                   pending=counts.get("pending", 0))
