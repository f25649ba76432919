"""What the rules see, read from the store: rules, instances, hosts, samples, OOM events.

Host state is tracked here too: a host whose heartbeats stopped is marked `down` with a
`host_down` event by a conditional UPDATE (only one server wins it); the agent feed marks it
`up` again (with `host_up`) on its next heartbeat or registration.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from dockyard.config import ServerSettings
from dockyard.model.alerts import RuleKind
from dockyard.server.alerts.rules import SAMPLE_KINDS, Inputs, Rule, Subject
from dockyard.store import alerts, builds, events, hosts, stats
from dockyard.store import instances as instance_rows
from dockyard.store.events import record as record_event
from dockyard.store.records import as_utc


def enabled_rules(sess: Session) -> list[Rule]:
    rows = alerts.enabled_rules(sess)
    return [Rule(id=r.id, name=r.name, kind=RuleKind(r.kind), threshold=r.threshold,
                 for_seconds=r.for_seconds, project_id=r.project_id) for r in rows]


def mark_hosts_down(sess: Session, timeout: float, now: datetime) -> int:
    """`up` hosts silent for longer than `timeout` become `down`, each with one event."""
    cutoff = now - timedelta(seconds=timeout)
    marked = 0
    for row in hosts.stored_up(sess):
        if row.last_heartbeat is None or as_utc(row.last_heartbeat) > cutoff:
            continue
        if hosts.mark_down_if_silent(sess, row, cutoff):
            record_event(sess, None, "host_down",
                         f"no heartbeat since {as_utc(row.last_heartbeat):%H:%M:%S} UTC "
                         f"(timeout {timeout:g}s)", row.name)
            marked += 1
    return marked


def _hosts(sess: Session, timeout: float) -> tuple[list[Subject], dict[str, datetime]]:
    subjects, down = [], {}
    for row in hosts.all_by_name(sess):
        if row.last_heartbeat is None:
            continue
        subjects.append(Subject("host", row.id, row.name))
        if row.state == "down":
            down[row.id] = as_utc(row.last_heartbeat) + timedelta(seconds=timeout)
    return subjects, down


def _oom_events(sess: Session, since: datetime) -> dict[str, list[datetime]]:
    found: dict[str, list[datetime]] = defaultdict(list)
    for instance_id, time in events.times_of(sess, "oom", since):
        found[instance_id].append(as_utc(time))
    return found


def load_inputs(sess: Session, rules: list[Rule], settings: ServerSettings,
                now: datetime) -> Inputs:
    """Samples and events as far back as the longest rule needs (plus one stale margin)."""
    instances = [Subject("instance", r.id, r.name, r.project_id)
                 for r in instance_rows.all_by_name(sess)]
    hosts, down = _hosts(sess, settings.heartbeat_timeout)
    sampled = [r for r in rules if r.kind in SAMPLE_KINDS or r.kind is RuleKind.oom]
    span = max((r.for_seconds for r in sampled), default=0.0) + settings.alert_stale
    since = now - timedelta(seconds=span)
    samples = ({i.id: stats.history(sess, i.id, since) for i in instances} if sampled else {})
    watch_builds = any(r.kind is RuleKind.build_failed for r in rules)
    repos = ([Subject("repo", r.id, r.name, r.project_id) for r in builds.all_repos(sess)]
             if watch_builds else [])
    oom_window = max((r.for_seconds for r in rules if r.kind is RuleKind.oom), default=0.0)
    return Inputs(now=now, stale_after=settings.alert_stale, instances=instances, hosts=hosts,
                  samples=samples, hosts_down=down, repos=repos,
                  failed_builds=builds.failure_streaks(sess) if watch_builds else {},
                  oom_events=_oom_events(sess, now - timedelta(seconds=oom_window)))
