"""The choices of an alert rule and a webhook, apart from `model.alerts` so that the CLI can
offer them as options without loading pydantic (issue 18: a command starts in ≤ 0.15 s)."""

from __future__ import annotations

from enum import StrEnum


class RuleKind(StrEnum):
    """What a rule measures. Its value is compared with `value >= threshold`."""

    oom = "oom"  # OOM kills of an instance within the last `for_seconds` (a window)
    memory_rss_ratio = "memory_rss_ratio"  # rss / memory limit, held for `for_seconds`
    pids_ratio = "pids_ratio"  # processes / pids limit, held for `for_seconds`
    load_over_cores = "load_over_cores"  # CPU demand / the instance's cores, held
    host_down = "host_down"  # 1 while a host misses heartbeats, held for `for_seconds`
    # failed builds of a repository since its last successful one (cancelled ones aside):
    # fires with a failed build, resolves with the next build that succeeds
    build_failed = "build_failed"


class WebhookFormat(StrEnum):
    generic = "generic"  # the alert as JSON (plus a `text` line)
    slack = "slack"  # {"text": ...}: Slack incoming webhooks and most IM bots
