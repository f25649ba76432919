"""Alert rules are pure: table-driven checks of thresholds, for-durations, staleness, resolve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dockyard.model.alerts import AlertState, RuleKind, WebhookFormat
from dockyard.model.stats import InstanceSample
from dockyard.server.alerts import notify
from dockyard.server.alerts.rules import (
    Inputs,
    Point,
    Rule,
    Subject,
    counter_increase,
    evaluate,
    held_verdict,
    load_points,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BOX = Subject("instance", "i1", "box", "p1")
OTHER = Subject("instance", "i2", "other", "p2")
HOST = Subject("host", "h1", "local")


def at(seconds_ago: float) -> datetime:
    return NOW - timedelta(seconds=seconds_ago)


def sample(seconds_ago: float, **fields: float | int | None) -> InstanceSample:
    return InstanceSample(instance_id="i1", time=at(seconds_ago), **fields)  # type: ignore[arg-type]


def inputs(samples: list[InstanceSample] | None = None, ooms: list[float] | None = None,
           down_for: float | None = None) -> Inputs:
    return Inputs(now=NOW, stale_after=30, instances=[BOX, OTHER], hosts=[HOST],
                  samples={"i1": samples or []},
                  oom_events={"i1": [at(s) for s in ooms or []]},
                  hosts_down={} if down_for is None else {"h1": at(down_for)})


def rule(kind: RuleKind, threshold: float, for_seconds: float = 0.0,
         project: str | None = None) -> Rule:
    return Rule("r1", kind.value, kind, threshold, for_seconds, project)


# (points as (seconds ago, value), threshold, for, firing, value)
HELD = [
    ([], 0.9, 0, False, None),
    ([(5, 0.95)], 0.9, 0, True, 0.95),
    ([(5, 0.90)], 0.9, 0, True, 0.90),  # at the threshold counts
    ([(5, 0.89)], 0.9, 0, False, 0.89),
    ([(30, 0.95), (20, 0.95), (10, 0.95)], 0.9, 60, False, 0.95),  # not long enough
    ([(70, 0.95), (40, 0.95), (10, 0.95)], 0.9, 60, True, 0.95),
    ([(70, 0.95), (40, 0.50), (10, 0.95)], 0.9, 60, False, 0.95),  # a dip restarts the run
    ([(70, 0.95), (40, 0.95), (10, 0.50)], 0.9, 60, False, 0.50),  # cleared: resolves
    ([(120, 0.95), (90, 0.95), (60, 0.95)], 0.9, 0, False, None),  # stale: unknown
]


@pytest.mark.parametrize(("points", "threshold", "hold", "firing", "value"), HELD)
def test_held_verdict(points: list[tuple[float, float]], threshold: float, hold: float,
                      firing: bool, value: float | None) -> None:
    series = [Point(at(ago), v) for ago, v in points]
    verdict = held_verdict(series, threshold, hold, NOW, stale_after=30)
    assert (verdict.firing, verdict.value) == (firing, value)


# (rule, samples, firing of box)
SAMPLED = [
    (rule(RuleKind.memory_rss_ratio, 0.9, 2),
     [sample(3, memory_rss_bytes=95, memory_limit_bytes=100),
      sample(1, memory_rss_bytes=96, memory_limit_bytes=100)], True),
    (rule(RuleKind.memory_rss_ratio, 0.9, 2),
     [sample(1, memory_rss_bytes=96, memory_limit_bytes=100)], False),
    (rule(RuleKind.memory_rss_ratio, 0.9),
     [sample(1, memory_rss_bytes=96, memory_limit_bytes=None)], False),  # no limit
    (rule(RuleKind.pids_ratio, 0.9), [sample(1, pids_current=60, pids_limit=64)], True),
    (rule(RuleKind.pids_ratio, 0.9), [sample(1, pids_current=10, pids_limit=64)], False),
    (rule(RuleKind.pids_ratio, 0.9, project="p2"),
     [sample(1, pids_current=60, pids_limit=64)], None),  # another project's rule
    (rule(RuleKind.load_over_cores, 1.0, 10),
     [sample(s, cpu_seconds=100 + 2 * (20 - s), cores=2) for s in (20, 15, 10, 5, 1)], True),
    (rule(RuleKind.load_over_cores, 1.0, 10),
     [sample(s, cpu_seconds=100 + (20 - s), cores=2) for s in (20, 15, 10, 5, 1)], False),
]


@pytest.mark.parametrize(("the_rule", "samples", "firing"), SAMPLED)
def test_sample_rules(the_rule: Rule, samples: list[InstanceSample],
                      firing: bool | None) -> None:
    verdicts = evaluate(the_rule, inputs(samples))
    if firing is None:
        assert BOX not in verdicts
    else:
        assert verdicts[BOX].firing is firing
        assert verdicts[OTHER].firing is False or the_rule.project_id == "p2"


@pytest.mark.parametrize(("ooms", "counters", "window", "firing"), [
    ([5.0], [], 300, True),
    ([400.0], [], 300, False),  # outside the window: resolved
    ([], [0, 0, 1], 300, True),  # the kernel counter alone
    ([], [3, 3], 300, False),  # old kills, no rise
    ([], [5, 0, 1], 300, True),  # a restart resets the counter; the rise after it counts
])
def test_oom_window(ooms: list[float], counters: list[int], window: float,
                    firing: bool) -> None:
    samples = [sample(10 - i, oom_kills=c) for i, c in enumerate(counters)]
    verdict = evaluate(rule(RuleKind.oom, 1, window), inputs(samples, ooms))[BOX]
    assert verdict.firing is firing


@pytest.mark.parametrize(("down_for", "hold", "firing"), [
    (None, 0, False), (1, 0, True), (5, 10, False), (15, 10, True)])
def test_host_down(down_for: float | None, hold: float, firing: bool) -> None:
    verdicts = evaluate(rule(RuleKind.host_down, 1, hold), inputs(down_for=down_for))
    assert list(verdicts) == [HOST]
    assert verdicts[HOST].firing is firing


def test_counter_and_load_helpers() -> None:
    assert counter_increase([None, 1, 1, 3, 0, 2]) == 4
    pts = load_points([sample(10, cpu_seconds=10, cpu_throttled_seconds=0, cores=1),
                       sample(0, cpu_seconds=15, cpu_throttled_seconds=5, cores=1)])
    assert [p.value for p in pts] == [1.0]
    assert load_points([sample(10, cpu_seconds=50, cores=1), sample(0, cpu_seconds=1,
                                                                     cores=1)]) == []


@pytest.mark.parametrize(("attempts", "delay"), [(1, 2.0), (2, 4.0), (3, 8.0), (30, 600.0)])
def test_backoff(attempts: int, delay: float) -> None:
    assert notify.backoff(attempts, 2.0) == delay


def test_bodies() -> None:
    from dockyard.model.alerts import Alert
    alert = Alert(id=1, rule="pids", rule_id="r", kind=RuleKind.pids_ratio,
                  subject_kind="instance", subject_id="i1", subject_name="box", project="p",
                  state=AlertState.firing, value=0.95, threshold=0.9, started_at=NOW,
                  resolved_at=None)
    slack = notify.body(alert, WebhookFormat.slack)
    assert list(slack) == ["text"] and "[FIRING] pids" in slack["text"]
    generic = notify.body(alert, WebhookFormat.generic)
    assert generic["status"] == "firing" and generic["alert"]["subject_name"] == "box"
