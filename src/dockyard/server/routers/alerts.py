"""/v1/alerts (firing and resolved), /v1/alerts/rules, /v1/webhooks.

Scope: an admin's rules and webhooks are global (every project and every host); a member's
belong to the member's project and see only its instances. Builtin rules cannot be deleted.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from dockyard.errors import Conflict, Forbidden, NotFound
from dockyard.model.alerts import AlertRule, AlertRuleCreate, RuleKind, Webhook, WebhookCreate
from dockyard.model.units import MAX_AMOUNT as MAX_ID
from dockyard.server import auth
from dockyard.server.alerts.records import alert_model, rule_model, webhook_model
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import alerts

router = APIRouter(tags=["alerts"])


def _scope(caller: Caller) -> str | None:
    """The project of what the caller creates: None (global) for an admin."""
    return None if caller.role == "admin" else caller.project_id


def _visible_to(caller: Caller) -> str | None:
    """What the caller sees (store/alerts.py): None, everything, for an admin."""
    return None if caller.role == "admin" else caller.project


@router.get("/v1/alerts")
def list_alerts(state: str = Query("firing", pattern="^(firing|resolved|all)$"),
                limit: int = Query(100, ge=1, le=1000), after: int = Query(0, ge=0, le=MAX_ID),
                caller: Caller = Depends(auth.user),
                ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    """Alerts in id order; `state=all` includes resolved ones."""
    with ctx.db.session() as sess:
        rows, more = alerts.alerts_page(sess, after, limit, None if state == "all" else state,
                                        _visible_to(caller))
        items = [alert_model(sess, r).model_dump(mode="json") for r in rows]
    return {"items": items, "next": str(rows[-1].id) if more else None}


@router.get("/v1/alerts/rules")
def list_rules(caller: Caller = Depends(auth.user),
               ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    with ctx.db.session() as sess:
        items = [rule_model(sess, r).model_dump(mode="json")
                 for r in alerts.rules(sess, _visible_to(caller))]
    return {"items": items, "next": None}


@router.post("/v1/alerts/rules", status_code=201, response_model=AlertRule)
def create_rule(spec: AlertRuleCreate, caller: Caller = Depends(auth.user),
                ctx: ServerContext = Depends(auth.context)) -> AlertRule:
    if spec.kind is RuleKind.host_down and caller.role != "admin":
        raise Forbidden("only an admin may add host rules")
    with ctx.db.session() as sess:
        row = alerts.add_rule(sess, name=spec.name, kind=spec.kind.value,
                              threshold=spec.threshold, for_seconds=spec.for_seconds,
                              project_id=_scope(caller))
        return rule_model(sess, row)


@router.delete("/v1/alerts/rules/{ref}", status_code=204)
def delete_rule(ref: str, caller: Caller = Depends(auth.user),
                ctx: ServerContext = Depends(auth.context)) -> None:
    """Delete a user rule with its alerts and their notifications."""
    with ctx.db.session() as sess:
        row = alerts.visible_rule(sess, ref, _visible_to(caller))
        if row is None or (row.project_id is None and caller.role != "admin"):
            raise NotFound(f"alert rule {ref} not found")
        if row.builtin:
            raise Conflict(f"alert rule {row.name} is builtin and cannot be deleted")
        alerts.delete_rule(sess, row)


@router.get("/v1/webhooks")
def list_webhooks(caller: Caller = Depends(auth.user),
                  ctx: ServerContext = Depends(auth.context)) -> dict[str, Any]:
    with ctx.db.session() as sess:
        counts = alerts.delivery_counts(sess)
        items = [webhook_model(sess, r, counts.get(r.id, {})).model_dump(mode="json")
                 for r in alerts.webhooks(sess, _visible_to(caller))]
    return {"items": items, "next": None}


@router.post("/v1/webhooks", status_code=201, response_model=Webhook)
def create_webhook(spec: WebhookCreate, caller: Caller = Depends(auth.user),
                   ctx: ServerContext = Depends(auth.context)) -> Webhook:
    """Notify `url` of every alert state change the caller can see (from now on)."""
    with ctx.db.session() as sess:
        row = alerts.add_webhook(sess, spec.url, spec.format.value, _scope(caller))
        return webhook_model(sess, row, {})


@router.delete("/v1/webhooks/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: str, caller: Caller = Depends(auth.user),
                   ctx: ServerContext = Depends(auth.context)) -> None:
    """Delete a webhook; its pending notifications are dropped."""
    with ctx.db.session() as sess:
        row = alerts.webhook(sess, webhook_id)
        if row is None or row.project_id != _scope(caller) and caller.role != "admin":
            raise NotFound(f"webhook {webhook_id} not found")
        alerts.delete_webhook(sess, row)
