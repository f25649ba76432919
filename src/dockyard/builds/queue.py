"""Which queued builds start and which are skipped: one build at a time per repository; of
the queued builds of one ref only the newest runs, older ones are superseded.

    plan(queued, running_repos) ─▶ Plan(start=[…], superseded={old id: newer id})
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Queued:
    id: str
    repo_id: str
    ref: str
    seq: int  # order of arrival (older first)


@dataclass
class Plan:
    start: list[str] = field(default_factory=list)
    superseded: dict[str, str] = field(default_factory=dict)


def plan(queued: list[Queued], running_repos: set[str]) -> Plan:
    out = Plan()
    newest: dict[tuple[str, str], Queued] = {}
    for build in sorted(queued, key=lambda b: b.seq):
        key = (build.repo_id, build.ref)
        if key in newest:
            out.superseded[newest[key].id] = build.id
        newest[key] = build
    busy = set(running_repos)
    for build in sorted(newest.values(), key=lambda b: b.seq):
        if build.repo_id not in busy:  # the oldest waiting ref of a free repository first
            out.start.append(build.id)
            busy.add(build.repo_id)
    return out
