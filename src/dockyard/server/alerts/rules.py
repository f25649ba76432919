"""Pure rule evaluation: series of points in, one verdict per subject out. No store, no clock.

Every rule kind turns its inputs into a series of `Point(time, value)` per subject and fires
when `value >= threshold`:

- held kinds (memory_rss_ratio, pids_ratio, load_over_cores, host_down) fire once every point
  of the trailing run at or above the threshold spans `for_seconds` (0: at once); a series
  whose newest point is older than `stale_after` is unknown and does not fire;
- the streak kind (build_failed) is the number of a repository's failed builds since its last
  successful one, firing while it reaches the threshold (so a build that succeeds resolves it);
- the window kind (oom) counts OOM kills in the last `for_seconds` (events, or the increase
  of the kernel's counter, whichever saw more) and fires while that count reaches the
  threshold, so it resolves by itself after a quiet window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dockyard.model.alerts import RuleKind
from dockyard.model.stats import InstanceSample


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    kind: RuleKind
    threshold: float
    for_seconds: float
    project_id: str | None = None  # None: every project (and hosts)


@dataclass(frozen=True)
class Subject:
    kind: str  # instance | host | repo
    id: str
    name: str
    project_id: str | None = None


@dataclass(frozen=True)
class Point:
    time: datetime
    value: float


@dataclass(frozen=True)
class Verdict:
    firing: bool
    value: float | None


@dataclass
class Inputs:
    """What one evaluation pass sees. Samples per instance are in time order."""

    now: datetime
    stale_after: float
    instances: list[Subject]
    hosts: list[Subject]
    samples: dict[str, list[InstanceSample]]
    oom_events: dict[str, list[datetime]]  # instance id → times of OOM events
    hosts_down: dict[str, datetime]  # host id → when it was last heard of + the timeout
    repos: list[Subject] = field(default_factory=list)
    failed_builds: dict[str, int] = field(default_factory=dict)  # repo id → failure streak


SAMPLE_KINDS = (RuleKind.memory_rss_ratio, RuleKind.pids_ratio, RuleKind.load_over_cores)


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or not den:
        return None
    return num / den


def ratio_points(kind: RuleKind, samples: Sequence[InstanceSample]) -> list[Point]:
    """rss/limit or pids/limit per sample; samples without a limit give no point."""
    points = []
    for s in samples:
        value = (_ratio(s.memory_rss_bytes, s.memory_limit_bytes)
                 if kind is RuleKind.memory_rss_ratio else _ratio(s.pids_current, s.pids_limit))
        if value is not None:
            points.append(Point(s.time, value))
    return points


def load_points(samples: Sequence[InstanceSample]) -> list[Point]:
    """CPU demand over cores between consecutive samples: (used + throttled seconds) per
    second, divided by the instance's cores. Throttled time is the demand a quota refused."""
    points = []
    for prev, cur in zip(samples, samples[1:], strict=False):
        dt = (cur.time - prev.time).total_seconds()
        if dt <= 0 or cur.cpu_seconds is None or prev.cpu_seconds is None or not cur.cores:
            continue
        used = cur.cpu_seconds - prev.cpu_seconds
        if used < 0:  # the container restarted: counters began again
            continue
        throttled = max(0.0, (cur.cpu_throttled_seconds or 0.0)
                        - (prev.cpu_throttled_seconds or 0.0))
        points.append(Point(cur.time, (used + throttled) / dt / cur.cores))
    return points


def held_verdict(points: Sequence[Point], threshold: float, for_seconds: float,
                 now: datetime, stale_after: float) -> Verdict:
    if not points or (now - points[-1].time).total_seconds() > stale_after:
        return Verdict(False, None)
    value = points[-1].value
    since: datetime | None = None
    for point in reversed(points):
        if point.value < threshold:
            break
        since = point.time
    firing = since is not None and (now - since).total_seconds() >= for_seconds
    return Verdict(firing, value)


def counter_increase(values: Iterable[int | None]) -> int:
    """Sum of the rises of a cumulative counter; a drop (restart) starts it again."""
    total, last = 0, None
    for value in values:
        if value is None:
            continue
        if last is not None and value > last:
            total += value - last
        last = value
    return total


def oom_verdict(rule: Rule, events: Sequence[datetime], samples: Sequence[InstanceSample],
                now: datetime) -> Verdict:
    since = now - timedelta(seconds=rule.for_seconds)
    by_events = sum(1 for t in events if t >= since)
    recent = [s.oom_kills for s in samples if s.time >= since]
    kills = max(by_events, counter_increase(recent))
    return Verdict(kills >= max(rule.threshold, 1.0), float(kills))


def _instance_verdict(rule: Rule, subject: Subject, inputs: Inputs) -> Verdict:
    samples = inputs.samples.get(subject.id, [])
    if rule.kind is RuleKind.oom:
        return oom_verdict(rule, inputs.oom_events.get(subject.id, []), samples, inputs.now)
    points = (load_points(samples) if rule.kind is RuleKind.load_over_cores
              else ratio_points(rule.kind, samples))
    return held_verdict(points, rule.threshold, rule.for_seconds, inputs.now,
                        inputs.stale_after)


def _down_points(host: Subject, inputs: Inputs) -> list[Point]:
    since = inputs.hosts_down.get(host.id)
    if since is None:
        return [Point(inputs.now, 0.0)]
    return [Point(since, 1.0), Point(inputs.now, 1.0)]


def _streak_verdict(rule: Rule, failures: int) -> Verdict:
    return Verdict(failures >= max(rule.threshold, 1.0), float(failures))


def evaluate(rule: Rule, inputs: Inputs) -> dict[Subject, Verdict]:
    """The verdict of `rule` on every subject it watches."""
    if rule.kind is RuleKind.build_failed:
        return {r: _streak_verdict(rule, inputs.failed_builds.get(r.id, 0))
                for r in inputs.repos if rule.project_id in (None, r.project_id)}
    if rule.kind is RuleKind.host_down:
        return {h: held_verdict(_down_points(h, inputs), rule.threshold, rule.for_seconds,
                                inputs.now, inputs.stale_after) for h in inputs.hosts}
    watched = [i for i in inputs.instances
               if rule.project_id is None or i.project_id == rule.project_id]
    return {i: _instance_verdict(rule, i, inputs) for i in watched}
