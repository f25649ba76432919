"""The alert loop: every `alert_interval` seconds, in a worker thread, mark silent hosts down,
evaluate every enabled rule, turn verdicts into alert rows, and post due webhook deliveries.

    no alert ──verdict fires──▶ firing ──verdict clears / subject gone──▶ resolved
                                  (each arrow: one event + one delivery per webhook)

Everything lives in the store, so a restarted server carries on where it stopped: open alerts
are the `firing` rows, pending notifications the `pending` deliveries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.config import ServerSettings
from dockyard.model.alerts import AlertState, RuleKind
from dockyard.server.alerts import notify
from dockyard.server.alerts.inputs import enabled_rules, load_inputs, mark_hosts_down
from dockyard.server.alerts.rules import Rule, Subject, Verdict, evaluate
from dockyard.store import alerts, instances
from dockyard.store.db import Database
from dockyard.store.events import record as record_event
from dockyard.store.tables import AlertRow

log = logging.getLogger(__name__)


def default_rules(settings: ServerSettings) -> list[tuple[str, RuleKind, float, float]]:
    """(name, kind, threshold, for_seconds) of the rules every cluster starts with."""
    return [("oom", RuleKind.oom, 1.0, settings.oom_window),
            ("memory", RuleKind.memory_rss_ratio, 0.9, settings.rss_for),
            ("pids", RuleKind.pids_ratio, 0.9, 0.0),
            ("load", RuleKind.load_over_cores, 1.0, settings.load_for),
            ("host-down", RuleKind.host_down, 1.0, 0.0),
            ("build-failed", RuleKind.build_failed, 1.0, 0.0)]


def ensure_default_rules(db: Database, settings: ServerSettings) -> None:
    """Create missing builtin rules; builtin durations follow the settings on every start."""
    with db.session() as sess:
        for name, kind, threshold, for_seconds in default_rules(settings):
            alerts.ensure_builtin_rule(sess, name, kind.value, threshold, for_seconds)


def _open_alerts(sess: Session) -> dict[tuple[str, str, str], AlertRow]:
    return {(r.rule_id, r.subject_kind, r.subject_id): r for r in alerts.firing(sess)}


def _announce(sess: Session, row: AlertRow, rule: Rule, now: datetime) -> None:
    instance = instances.get(sess, row.subject_id) if row.subject_kind == "instance" else None
    value = "-" if row.value is None else f"{row.value:.3g}"
    record_event(sess, instance, f"alert_{row.state}",
                 f"{rule.name} ({rule.kind.value}) {row.state} on {row.subject_kind} "
                 f"{row.subject_name}: value {value}, threshold {rule.threshold:g}",
                 row.subject_name if row.subject_kind == "host" else None,
                 project_id=row.project_id)
    alerts.enqueue(sess, row, now)


def apply_verdicts(sess: Session, verdicts: list[tuple[Rule, dict[Subject, Verdict]]],
                   now: datetime) -> int:
    """Open, update and resolve alert rows; returns how many changed state."""
    open_alerts = _open_alerts(sess)
    changed = 0
    for rule, by_subject in verdicts:
        for subject, verdict in by_subject.items():
            row = open_alerts.pop((rule.id, subject.kind, subject.id), None)
            if row is not None:
                row.value = verdict.value if verdict.value is not None else row.value
                if not verdict.firing:
                    row.state, row.resolved_at = AlertState.resolved.value, now
                    _announce(sess, row, rule, now)
                    changed += 1
            elif verdict.firing:
                row = alerts.open_alert(sess, rule.id, subject.kind, subject.id, subject.name,
                                        subject.project_id, verdict.value, now)
                _announce(sess, row, rule, now)
                changed += 1
    rules = {rule.id: rule for rule, _ in verdicts}
    for row in open_alerts.values():  # the subject is gone or the rule is disabled
        row.state, row.resolved_at = AlertState.resolved.value, now
        if row.rule_id in rules:
            _announce(sess, row, rules[row.rule_id], now)
        changed += 1
    return changed


class AlertEngine:
    def __init__(self, db: Database, settings: ServerSettings,
                 on_change: Callable[[], None]) -> None:
        self._db = db
        self._settings = settings
        self._on_change = on_change  # wakes long polls (events --follow)
        self._sender = notify.WebhookSender(db, settings)

    def evaluate_once(self, now: datetime) -> int:
        """One pass of host tracking and rule evaluation; returns the number of changes."""
        with self._db.session() as sess:
            changed = mark_hosts_down(sess, self._settings.heartbeat_timeout, now)
        try:
            with self._db.session() as sess:
                rules = enabled_rules(sess)
                inputs = load_inputs(sess, rules, self._settings, now)
                changed += apply_verdicts(sess, [(r, evaluate(r, inputs)) for r in rules], now)
        except IntegrityError:  # another server opened the same alert first
            log.info("alert pass lost a race with another server; next pass catches up")
        if changed:
            self._on_change()
        return changed

    def tick(self) -> None:
        self.evaluate_once(datetime.now(UTC))
        self._sender.deliver_due(datetime.now(UTC))

    async def run(self) -> None:
        """The loop of the server's lifespan; a failing pass is logged, never fatal."""
        try:
            while True:
                try:
                    await asyncio.to_thread(self.tick)
                except Exception:
                    log.exception("alert pass failed")
                await asyncio.sleep(self._settings.alert_interval)
        finally:
            self._sender.close()
