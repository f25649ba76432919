"""Alerts: rules evaluated over samples, events and host heartbeats; webhooks notified of
every state change of an alert (firing, resolved)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator

# The two choices live in alert_kinds (no pydantic, for the CLI); `as` re-exports them here.
from dockyard.model.alert_kinds import RuleKind as RuleKind
from dockyard.model.alert_kinds import WebhookFormat as WebhookFormat
from dockyard.model.instance import Strict
from dockyard.model.validators import RULE_NAME_RE, RULE_NAME_SCHEMA, URL_RE


class AlertState(StrEnum):
    firing = "firing"
    resolved = "resolved"


class AlertRuleCreate(Strict):
    name: str = Field(min_length=1, max_length=63, json_schema_extra=RULE_NAME_SCHEMA)
    kind: RuleKind
    threshold: float = Field(ge=0)
    for_seconds: float = Field(0.0, ge=0, le=7 * 86400)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not RULE_NAME_RE.match(value):
            raise ValueError("rule name must be letters, digits, '-', '_' and '.'")
        return value


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
    url: str = Field(min_length=8, max_length=1024, json_schema_extra={"pattern": URL_RE.pattern})
    format: WebhookFormat = WebhookFormat.generic

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not URL_RE.match(value):
            raise ValueError("webhook url must start with http:// or https://")
        return value


class Webhook(BaseModel):
    id: str
    url: str
    format: WebhookFormat
    project: str | None
    created_at: datetime
    delivered: int = Field(0, description="notifications sent")
    failed: int = Field(0, description="notifications given up after every retry")
    pending: int = Field(0, description="notifications waiting for a (re)try")
