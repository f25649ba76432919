"""/v1/alerts (firing and resolved), /v1/alerts/rules, /v1/webhooks.

Scope: an admin's rules and webhooks are global (every project and every host); a member's
belong to the member's project and see only its instances. Builtin rules cannot be deleted.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import delete, func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from dockyard.errors import Conflict, Forbidden, NotFound
from dockyard.model.alerts import AlertRule, AlertRuleCreate, RuleKind, Webhook, WebhookCreate
from dockyard.model.ids import new_id
from dockyard.model.units import MAX_AMOUNT as MAX_ID
from dockyard.server import auth
from dockyard.server.alerts.records import alert_model, rule_model, webhook_model
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store.tables import AlertRow, AlertRuleRow, DeliveryRow, WebhookRow

router = APIRouter(tags=["alerts"])


def _scope(caller: Caller) -> str | None:
    """The project of what the caller creates: None (global) for an admin."""
    return None if caller.role == "admin" else caller.project_id


def _visible(column: Any, caller: Caller) -> ColumnElement[bool]:
    if caller.role == "admin":
        return true()
    return column.is_(None) | (column == caller.project_id)  # type: ignore[no-any-return]


@router.get("/v1/alerts")
def list_alerts(state: str = Query("firing", pattern="^(firing|resolved|all)$"),
                limit: int = Query(100, ge=1, le=1000), after: int = Query(0, ge=0, le=MAX_ID),
                caller: Caller = Depends(auth.user),
                ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """Alerts in id order; `state=all` includes resolved ones."""
    with ctx.db.session() as sess:
        query = select(AlertRow).where(AlertRow.id > after)
        if state != "all":
            query = query.where(AlertRow.state == state)
        if caller.role != "admin":
            query = query.where(AlertRow.project_id == caller.project_id)
        rows = list(sess.scalars(query.order_by(AlertRow.id).limit(limit + 1)))
        more = len(rows) > limit
        items = [alert_model(sess, r).model_dump(mode="json") for r in rows[:limit]]
    return {"items": items, "next": str(rows[limit - 1].id) if more else None}


@router.get("/v1/alerts/rules")
def list_rules(caller: Caller = Depends(auth.user),
               ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    with ctx.db.session() as sess:
        rows = sess.scalars(select(AlertRuleRow)
                            .where(_visible(AlertRuleRow.project_id, caller))
                            .order_by(AlertRuleRow.name))
        items = [rule_model(sess, r).model_dump(mode="json") for r in rows]
    return {"items": items, "next": None}


@router.post("/v1/alerts/rules", status_code=201, response_model=AlertRule)
def create_rule(spec: AlertRuleCreate, caller: Caller = Depends(auth.user),
                ctx: ServerContext = Depends(auth.context)) -> AlertRule:
    if spec.kind is RuleKind.host_down and caller.role != "admin":
        raise Forbidden("only an admin may add host rules")
    try:
        with ctx.db.session() as sess:
            if sess.scalar(select(AlertRuleRow.id).where(AlertRuleRow.name == spec.name)):
                raise Conflict(f"an alert rule named {spec.name!r} already exists")
            row = AlertRuleRow(id=new_id(), name=spec.name, kind=spec.kind.value,
                               threshold=spec.threshold, for_seconds=spec.for_seconds,
                               project_id=_scope(caller), enabled=True, builtin=False)
            sess.add(row)
            sess.flush()
            return rule_model(sess, row)
    except IntegrityError as exc:  # UNIQUE(name): a concurrent create won
        raise Conflict(f"an alert rule named {spec.name!r} already exists") from exc


@router.delete("/v1/alerts/rules/{ref}", status_code=204)
def delete_rule(ref: str, caller: Caller = Depends(auth.user),
                ctx: ServerContext = Depends(auth.context)) -> None:
    """Delete a user rule with its alerts and their notifications."""
    with ctx.db.session() as sess:
        row = sess.scalar(select(AlertRuleRow).where(
            (AlertRuleRow.name == ref) | (AlertRuleRow.id == ref),
            _visible(AlertRuleRow.project_id, caller)))
        if row is None or (row.project_id is None and caller.role != "admin"):
            raise NotFound(f"alert rule {ref} not found")
        if row.builtin:
            raise Conflict(f"alert rule {row.name} is builtin and cannot be deleted")
        alert_ids = list(sess.scalars(select(AlertRow.id).where(AlertRow.rule_id == row.id)))
        if alert_ids:
            sess.execute(delete(DeliveryRow).where(DeliveryRow.alert_id.in_(alert_ids)))
            sess.execute(delete(AlertRow).where(AlertRow.id.in_(alert_ids)))
        sess.delete(row)


def _delivery_counts(sess: Any) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    rows = sess.execute(select(DeliveryRow.webhook_id, DeliveryRow.state, func.count())
                        .group_by(DeliveryRow.webhook_id, DeliveryRow.state))
    for webhook_id, state, count in rows:
        counts.setdefault(webhook_id, {})[state] = int(count)
    return counts


@router.get("/v1/webhooks")
def list_webhooks(caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    with ctx.db.session() as sess:
        counts = _delivery_counts(sess)
        rows = sess.scalars(select(WebhookRow).where(_visible(WebhookRow.project_id, caller))
                            .order_by(WebhookRow.created_at, WebhookRow.id))
        items = [webhook_model(sess, r, counts.get(r.id, {})).model_dump(mode="json")
                 for r in rows]
    return {"items": items, "next": None}


@router.post("/v1/webhooks", status_code=201, response_model=Webhook)
def create_webhook(spec: WebhookCreate, caller: Caller = Depends(auth.user),
                   ctx: ServerContext = Depends(auth.context)) -> Webhook:
    """Notify `url` of every alert state change the caller can see (from now on)."""
    with ctx.db.session() as sess:
        row = WebhookRow(id=new_id(), url=spec.url, format=spec.format.value,
                         project_id=_scope(caller))
        sess.add(row)
        sess.flush()
        return webhook_model(sess, row, {})


@router.delete("/v1/webhooks/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: str, caller: Caller = Depends(auth.user),
                   ctx: ServerContext = Depends(auth.context)) -> None:
    """Delete a webhook; its pending notifications are dropped."""
    with ctx.db.session() as sess:
        row = sess.get(WebhookRow, webhook_id)
        if row is None or row.project_id != _scope(caller) and caller.role != "admin":
            raise NotFound(f"webhook {webhook_id} not found")
        sess.execute(delete(DeliveryRow).where(DeliveryRow.webhook_id == row.id))
        sess.delete(row)
