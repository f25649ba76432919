"""The rollout planner: current replicas + desired → the next steps, table-driven, and whole
updates driven to the end through a small simulator."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dockyard.model.stack import FailureAction, UpdateConfig, UpdateOrder
from dockyard.stacks.planner import (
    Decision,
    Desired,
    Health,
    Progress,
    Replace,
    Replica,
    Restart,
    Start,
    Status,
    Stop,
    plan,
)

H, S, U = Health.healthy, Health.starting, Health.unhealthy
STOP_FIRST = UpdateConfig()
START_FIRST = UpdateConfig(order=UpdateOrder.start_first)


def reps(*specs: str) -> list[Replica]:
    """`"1:v1:h"` → replica 1 at version 1, healthy (`s` starting, `u` unhealthy, `+ip` a
    fixed address)."""
    out = []
    for spec in specs:
        index, version, health = spec.removesuffix("+ip").split(":")
        out.append(Replica(int(index), int(version[1:]), {"h": H, "s": S, "u": U}[health],
                           fixed_ip=spec.endswith("+ip")))
    return out


CASES: list[tuple[str, list[Replica], Desired, Progress, Decision]] = [
    ("all new and healthy: done", reps("1:v2:h", "2:v2:h"), Desired(2, 2, STOP_FIRST),
     Progress(), Decision(Status.done, reason="2 replicas at version 2")),
    ("nothing wanted, nothing there: done", [], Desired(2, 0, STOP_FIRST), Progress(),
     Decision(Status.done, reason="0 replicas at version 2")),
    ("first deploy starts every replica", [], Desired(1, 3, STOP_FIRST), Progress(),
     Decision(Status.progressing, (Start(1, 1), Start(2, 1), Start(3, 1)), "scale up")),
    ("scale up fills the lowest free indexes", reps("1:v1:h", "3:v1:h"),
     Desired(1, 4, STOP_FIRST), Progress(),
     Decision(Status.progressing, (Start(2, 1), Start(4, 1)), "scale up")),
    ("scale down stops the highest indexes", reps(*(f"{i}:v1:h" for i in range(1, 6))),
     Desired(1, 2, STOP_FIRST), Progress(),
     Decision(Status.progressing, (Stop(5), Stop(4), Stop(3)), "scale down")),
    ("scale down stops unhealthy replicas first", reps("1:v1:h", "2:v1:u", "3:v1:h", "4:v1:h"),
     Desired(1, 2, STOP_FIRST), Progress(updating=False),
     Decision(Status.progressing, (Stop(2), Stop(4)), "scale down")),
    ("to zero", reps("1:v1:h", "2:v1:h"), Desired(1, 0, STOP_FIRST), Progress(),
     Decision(Status.progressing, (Stop(2), Stop(1)), "scale down")),
    ("wait while a new replica starts", reps("1:v2:s", "2:v1:h", "3:v1:h"),
     Desired(2, 3, STOP_FIRST), Progress(),
     Decision(Status.waiting, reason="replicas 1 are starting")),
    ("stop-first: replace in place, one at a time", reps("1:v1:h", "2:v1:h", "3:v1:h"),
     Desired(2, 3, STOP_FIRST), Progress(),
     Decision(Status.progressing, (Replace(1, 2),), "update 1 to version 2")),
    ("next batch once the first is healthy", reps("1:v2:h", "2:v1:h", "3:v1:h"),
     Desired(2, 3, STOP_FIRST), Progress(),
     Decision(Status.progressing, (Replace(2, 2),), "update 2 to version 2")),
    ("parallelism 2", reps("1:v1:h", "2:v1:h", "3:v1:h"),
     Desired(2, 3, UpdateConfig(parallelism=2)), Progress(),
     Decision(Status.progressing, (Replace(1, 2), Replace(2, 2)), "update 1, 2 to version 2")),
    ("parallelism 0: all at once", reps("1:v1:h", "2:v1:h", "3:v1:h"),
     Desired(2, 3, UpdateConfig(parallelism=0)), Progress(),
     Decision(Status.progressing, (Replace(1, 2), Replace(2, 2), Replace(3, 2)),
              "update 1, 2, 3 to version 2")),
    ("unhealthy old replicas are updated first", reps("1:v1:h", "2:v1:u", "3:v1:h"),
     Desired(2, 3, STOP_FIRST), Progress(),
     Decision(Status.progressing, (Replace(2, 2),), "update 2 to version 2")),
    ("start-first: the new replica starts beside the old", reps("1:v1:h", "2:v1:h"),
     Desired(2, 2, START_FIRST), Progress(),
     Decision(Status.progressing, (Start(3, 2),), "update 1 to version 2")),
    ("start-first: the old one stops once the new is healthy",
     reps("1:v1:h", "2:v1:h", "3:v2:h"), Desired(2, 2, START_FIRST), Progress(),
     Decision(Status.progressing, (Stop(2),), "stop replaced replicas")),
    ("start-first: a fixed address forces stop-first", reps("1:v1:h+ip"),
     Desired(2, 1, START_FIRST, fixed_ip=True), Progress(),
     Decision(Status.progressing, (Replace(1, 2),), "update 1 to version 2")),
    ("start-first: a new fixed address forces stop-first too", reps("1:v1:h"),
     Desired(2, 1, START_FIRST, fixed_ip=True), Progress(),
     Decision(Status.progressing, (Replace(1, 2),), "update 1 to version 2")),
    ("start-first: only the fixed-address replica goes in place",
     reps("1:v1:h+ip", "2:v1:h"),
     Desired(2, 2, UpdateConfig(order=UpdateOrder.start_first, parallelism=2)),
     Progress(), Decision(Status.progressing, (Replace(1, 2), Start(3, 2)),
                          "update 1, 2 to version 2")),
    ("delay not over: wait the rest", reps("1:v2:h", "2:v1:h"),
     Desired(2, 2, UpdateConfig(delay=10)), Progress(since_last_batch=4),
     Decision(Status.waiting, reason="delay between batches", wait=6)),
    ("delay over: next batch", reps("1:v2:h", "2:v1:h"),
     Desired(2, 2, UpdateConfig(delay=10)), Progress(since_last_batch=10),
     Decision(Status.progressing, (Replace(2, 2),), "update 2 to version 2")),
    ("no delay before the first batch", reps("1:v1:h", "2:v1:h"),
     Desired(2, 2, UpdateConfig(delay=10)), Progress(since_last_batch=0),
     Decision(Status.progressing, (Replace(1, 2),), "update 1 to version 2")),
    ("a failure pauses (the default)", reps("1:v2:u", "2:v1:h", "3:v1:h"),
     Desired(2, 3, STOP_FIRST), Progress(),
     Decision(Status.paused, reason="1 of 3 new replicas failed (max_failure_ratio 0.0)")),
    ("a failure rolls back", reps("1:v2:u", "2:v1:h", "3:v1:h"),
     Desired(2, 3, UpdateConfig(failure_action=FailureAction.rollback)), Progress(),
     Decision(Status.rollback, reason="1 of 3 new replicas failed (max_failure_ratio 0.0)")),
    ("a failure with continue goes on", reps("1:v2:u", "2:v1:h", "3:v1:h"),
     Desired(2, 3, UpdateConfig(failure_action=FailureAction.continue_)), Progress(),
     Decision(Status.progressing, (Replace(2, 2),), "update 2 to version 2")),
    ("failures within max_failure_ratio go on", reps("1:v2:u", "2:v1:h", "3:v1:h", "4:v1:h"),
     Desired(2, 4, UpdateConfig(max_failure_ratio=0.5)), Progress(failures=1),
     Decision(Status.progressing, (Replace(2, 2),), "update 2 to version 2")),
    ("failures beyond max_failure_ratio pause", reps("1:v2:u", "2:v1:h", "3:v1:h", "4:v1:h"),
     Desired(2, 4, UpdateConfig(max_failure_ratio=0.5)), Progress(failures=2),
     Decision(Status.paused, reason="3 of 4 new replicas failed (max_failure_ratio 0.5)")),
    ("failures already removed count", reps("1:v1:h", "2:v1:h"),
     Desired(2, 2, STOP_FIRST), Progress(failures=1),
     Decision(Status.paused, reason="1 of 2 new replicas failed (max_failure_ratio 0.0)")),
    ("outside an update, an unhealthy replica is restarted first",
     reps("1:v2:u", "2:v2:h"), Desired(2, 2, STOP_FIRST), Progress(updating=False),
     Decision(Status.progressing, (Restart(1),), "repair unhealthy replicas 1")),
    ("outside an update, one still unhealthy after its restart is replaced",
     [Replica(1, 2, U, restarts=1), Replica(2, 2, U), Replica(3, 2, H)],
     Desired(2, 3, STOP_FIRST), Progress(updating=False),
     Decision(Status.progressing, (Replace(1, 2), Restart(2)),
              "repair unhealthy replicas 1, 2")),
    ("outside an update, a restarted replica that is starting is waited for",
     [Replica(1, 2, S, restarts=1), Replica(2, 2, H)], Desired(2, 2, STOP_FIRST),
     Progress(updating=False), Decision(Status.waiting, reason="replicas 1 are starting")),
    ("during an update an unhealthy new replica is a failure, not repaired",
     [Replica(1, 2, U), Replica(2, 1, H)], Desired(2, 2, STOP_FIRST), Progress(),
     Decision(Status.paused, reason="1 of 2 new replicas failed (max_failure_ratio 0.0)")),
    ("outside an update, surplus unhealthy replicas are stopped, not repaired",
     reps("1:v2:u", "2:v2:h", "3:v2:h"), Desired(2, 2, STOP_FIRST), Progress(updating=False),
     Decision(Status.progressing, (Stop(1),), "scale down")),
    ("scaled down during an update: old replicas go first",
     reps("1:v2:h", "2:v1:h", "3:v1:h", "4:v1:h"), Desired(2, 2, STOP_FIRST), Progress(),
     Decision(Status.progressing, (Stop(4), Stop(3)), "stop replaced replicas")),
    ("scaled up during an update: new replicas start", reps("1:v2:h", "2:v1:h"),
     Desired(2, 4, STOP_FIRST), Progress(),
     Decision(Status.progressing, (Start(3, 2), Start(4, 2)), "scale up")),
    ("more new than wanted: surplus and every old one stop",
     reps("1:v2:h", "2:v2:u", "3:v2:h", "4:v1:h"), Desired(2, 2, STOP_FIRST),
     Progress(updating=False),
     Decision(Status.progressing, (Stop(2), Stop(4)), "scale down")),
    ("rolling back is planning the previous version", reps("1:v2:u", "2:v1:h", "3:v1:h"),
     Desired(1, 3, UpdateConfig()), Progress(),
     Decision(Status.progressing, (Replace(1, 1),), "update 1 to version 1")),
]


@pytest.mark.parametrize(("current", "desired", "progress", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_plan(current: list[Replica], desired: Desired, progress: Progress,
              expected: Decision) -> None:
    assert plan(current, desired, progress) == expected


def drive(current: list[Replica], desired: Desired, fail_version: int | None = None,
          ) -> tuple[Decision, list[Replica], int]:
    """Run the planner to a stop: steps applied, a started replica healthy on the next look
    (unhealthy if its version is `fail_version`). Returns the last decision, the replicas,
    and the fewest healthy replicas seen between passes."""
    replicas = {r.index: r for r in current}
    fewest = len(replicas)
    failures = 0
    for _ in range(100):
        decision = plan(sorted(replicas.values(), key=lambda r: r.index), desired,
                        Progress(failures=failures, since_last_batch=desired.config.delay))
        if decision.status is not Status.progressing:
            return decision, sorted(replicas.values(), key=lambda r: r.index), fewest
        for step in decision.steps:
            if isinstance(step, Stop | Replace):
                del replicas[step.index]
            if isinstance(step, Start | Replace):
                replicas[step.index] = Replica(step.index, step.version, S)
        fewest = min(fewest, sum(r.health is H for r in replicas.values()))
        for index, rep in replicas.items():
            if rep.health is S:
                replicas[index] = replace(rep, health=U if rep.version == fail_version else H)
    raise AssertionError("the planner did not come to a stop in 100 passes")


OLD5 = reps(*(f"{i}:v1:h" for i in range(1, 6)))


@pytest.mark.parametrize(("config", "fewest_healthy"), [
    (UpdateConfig(), 4),  # stop-first, one at a time: one replica down at a time
    (UpdateConfig(parallelism=2), 3),
    (UpdateConfig(order=UpdateOrder.start_first), 5),  # never fewer than wanted
    (UpdateConfig(order=UpdateOrder.start_first, parallelism=3), 5),
])
def test_a_whole_update_converges(config: UpdateConfig, fewest_healthy: int) -> None:
    decision, final, fewest = drive(OLD5, Desired(2, 5, config))
    assert decision.status is Status.done
    assert [(r.version, r.health) for r in final] == [(2, H)] * 5
    assert sorted(r.index for r in final) == [1, 2, 3, 4, 5] or \
        config.order is UpdateOrder.start_first  # start-first moves names to free indexes
    assert fewest == fewest_healthy


def test_a_failing_version_pauses_after_one_batch() -> None:
    decision, final, _ = drive(OLD5, Desired(2, 5, UpdateConfig(parallelism=2)),
                               fail_version=2)
    assert decision.status is Status.paused
    assert sorted(r.version for r in final) == [1, 1, 1, 2, 2]  # one batch, then stop


def test_a_failing_version_rolled_back_ends_on_the_old_version() -> None:
    failing = UpdateConfig(failure_action=FailureAction.rollback)
    decision, after_update, _ = drive(OLD5, Desired(2, 5, failing), fail_version=2)
    assert decision.status is Status.rollback
    decision, final, _ = drive(after_update, Desired(1, 5, UpdateConfig()), fail_version=2)
    assert decision.status is Status.done
    assert [(r.index, r.version, r.health) for r in final] == [(i, 1, H) for i in range(1, 6)]
