"""Alerts: rules evaluated over samples, events and host heartbeats; webhooks notified of
every state change of an alert (firing, resolved)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

# The two choices live in alert_kinds (no pydantic, for the CLI); `as` re-exports them here.
from dockyard.model.alert_kinds import RuleKind as RuleKind
from dockyard.model.alert_kinds import WebhookFormat as WebhookFormat
from dockyard.model.instance import Strict
from dockyard.model.validators import RULE_NAME_RE, RULE_NAME_SCHEMA, URL_RE, matching


class AlertState(StrEnum):
    firing = "firing"
    resolved = "resolved"


class AlertRuleCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=63, json_schema_extra=RULE_NAME_SCHEMA),
                    matching(RULE_NAME_RE, "rule name must be letters, digits, '-', '_' and '.'")]
    kind: RuleKind
    threshold: float = Field(ge=0)
    for_seconds: float = Field(0.0, ge=0, le=7 * 86400)


class AlertRule(BaseModel):
    id: str
    name: str
    kind: RuleKind
    threshold: float
    for_seconds: float
    project: str | None = Field(description="null: the rule sees every project and host")
    enabled: bool
    builtin: bool


class Alert(BaseModel):
    id: int
    rule: str
    rule_id: str
    kind: RuleKind
    subject_kind: str = Field(description="instance | host | repo")
    subject_id: str
    subject_name: str
    project: str | None
    state: AlertState
    value: float | None
    threshold: float
    started_at: datetime
    resolved_at: datetime | None


class WebhookCreate(Strict):
    url: Annotated[str, Field(min_length=8, max_length=1024,
                              json_schema_extra={"pattern": URL_RE.pattern}),
                   matching(URL_RE, "webhook url must start with http:// or https://")]
    format: WebhookFormat = WebhookFormat.generic


class Webhook(BaseModel):
    id: str
    url: str
    format: WebhookFormat
    project: str | None
    created_at: datetime
    delivered: int = Field(0, description="notifications sent")
    failed: int = Field(0, description="notifications given up after every retry")
    pending: int = Field(0, description="notifications waiting for a (re)try")
