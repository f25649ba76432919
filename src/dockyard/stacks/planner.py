"""The rollout planner: a service's replicas as they are + as wanted → the next steps.

    replicas ─▶ new (version == desired.version) / old
      │ a new replica is starting (inside its monitor window)  ─▶ WAITING
      │ updating, failures > max_failure_ratio × replicas       ─▶ PAUSED | ROLLBACK
      │                                                            (continue: go on)
      │ more new replicas than wanted ─▶ stop the surplus and every old one   (scale down)
      │ more replicas than wanted     ─▶ stop old ones: a start-first batch became
      │                                  healthy, or the service was scaled down
      │ not updating, an unhealthy new replica ─▶ Restart it (its first repair), else
      │                                           Replace it with a new one
      │ fewer replicas than wanted    ─▶ start new ones                      (scale up)
      │ old replicas left ─▶ `delay` since the last batch not over ─▶ WAITING
      │                  ─▶ the next batch: `parallelism` old replicas (0: all), unhealthy
      │                     ones first, then lowest index; start-first starts the new one
      │                     beside the old (stopped once healthy, two lines up), stop-first
      │                     (or a fixed ipv4_address) replaces it in place
      ▼
    no old replica, as many new as wanted, none starting ─▶ DONE

Level-triggered: the planner keeps no state. The caller runs the steps, observes, and asks
again; what it must remember of an update is `Progress` (failures already removed, the time
since the last batch). Replicas to stop are chosen unhealthy first, then old before new, then
highest index first. A new replica that is still not healthy when its monitor window
(`UpdateConfig.monitor_for`) ends is reported `unhealthy` by the caller: that is a failure.
Outside an update (`Progress.updating` False) failures are the health loop's business, not
the planner's. ROLLBACK means: plan again with the previous version and `rollback_config`.
Pure: no store, no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from dockyard.model.stack import FailureAction, UpdateConfig, UpdateOrder

__all__ = ["Decision", "Desired", "Health", "Progress", "Replica", "Replace", "Restart",
           "Start", "Status", "Stop", "plan"]


class Health(StrEnum):
    starting = "starting"  # running, not yet healthy, still inside its monitor window
    healthy = "healthy"  # healthy (or running, for a service without a healthcheck)
    unhealthy = "unhealthy"  # failed its healthcheck, exited, or missed its monitor window


@dataclass(frozen=True)
class Replica:
    index: int  # N in STACK-SERVICE-N
    version: int
    health: Health
    fixed_ip: bool = False
    restarts: int = 0  # restarts for being unhealthy since it was made


@dataclass(frozen=True)
class Desired:
    version: int
    replicas: int
    config: UpdateConfig  # update_config, or rollback_config while rolling back
    fixed_ip: bool = False  # the service has an ipv4_address (then replicas <= 1)


@dataclass(frozen=True)
class Progress:
    """What the caller remembers of the update in progress."""

    updating: bool = True
    failures: int = 0  # new replicas that failed and are already gone
    since_last_batch: float | None = None  # seconds; None: no batch ran yet


@dataclass(frozen=True)
class Start:
    index: int
    version: int


@dataclass(frozen=True)
class Stop:
    index: int


@dataclass(frozen=True)
class Replace:
    """Stop the replica at `index`, then start `version` under the same name (stop-first)."""

    index: int
    version: int


@dataclass(frozen=True)
class Restart:
    """Restart the replica at `index` in place (its first repair for being unhealthy)."""

    index: int


Step = Start | Stop | Replace | Restart


class Status(StrEnum):
    progressing = "progressing"  # run `steps`, then plan again
    waiting = "waiting"  # nothing to do until a replica's health changes or `wait` passes
    paused = "paused"  # failure_action pause: an operator must act
    rollback = "rollback"  # failure_action rollback: plan the previous version
    done = "done"


@dataclass(frozen=True)
class Decision:
    status: Status
    steps: tuple[Step, ...] = ()
    reason: str = ""
    wait: float = 0.0  # seconds still to wait (the update's delay)


def plan(current: Sequence[Replica], desired: Desired,
         progress: Progress | None = None) -> Decision:
    progress = progress or Progress()
    new = [r for r in current if r.version == desired.version]
    old = [r for r in current if r.version != desired.version]
    starting = [r.index for r in new if r.health is Health.starting]
    if starting:
        return Decision(Status.waiting, reason=f"replicas {_indexes(starting)} are starting")
    failed = _failure_decision(new, desired, progress)
    if failed is not None:
        return failed
    if len(new) > desired.replicas:
        surplus = _removal_order(new)[:len(new) - desired.replicas]
        return _progress([Stop(r.index) for r in [*surplus, *old]], "scale down")
    excess = len(new) + len(old) - desired.replicas
    if excess > 0:
        return _progress([Stop(r.index) for r in _removal_order(old)[:excess]],
                         "stop replaced replicas" if new else "scale down")
    if not progress.updating:
        sick = [r for r in new if r.health is Health.unhealthy]
        if sick:
            return _progress([Restart(r.index) if r.restarts == 0
                              else Replace(r.index, desired.version) for r in sick],
                             f"repair unhealthy replicas {_indexes(r.index for r in sick)}")
    if excess < 0:
        indexes = _free_indexes(current, -excess)
        return _progress([Start(i, desired.version) for i in indexes], "scale up")
    if not old:
        return Decision(Status.done, reason=f"{len(new)} replicas at version "
                                            f"{desired.version}")
    return _next_batch(current, new, old, desired, progress)


def _failure_decision(new: Sequence[Replica], desired: Desired,
                      progress: Progress) -> Decision | None:
    if not progress.updating:
        return None
    failures = progress.failures + sum(r.health is Health.unhealthy for r in new)
    allowed = desired.config.max_failure_ratio * max(desired.replicas, 1)
    if failures == 0 or failures <= allowed:
        return None
    action = desired.config.failure_action
    reason = (f"{failures} of {desired.replicas} new replicas failed "
              f"(max_failure_ratio {desired.config.max_failure_ratio})")
    if action is FailureAction.pause:
        return Decision(Status.paused, reason=reason)
    if action is FailureAction.rollback:
        return Decision(Status.rollback, reason=reason)
    return None  # continue: the failed replicas count as updated


def _next_batch(current: Sequence[Replica], new: Sequence[Replica], old: Sequence[Replica],
                desired: Desired, progress: Progress) -> Decision:
    config = desired.config
    delay_left = config.delay - (progress.since_last_batch or 0.0)
    if new and progress.since_last_batch is not None and delay_left > 0:
        return Decision(Status.waiting, reason="delay between batches", wait=delay_left)
    size = config.parallelism or len(old)
    batch = sorted(old, key=lambda r: (r.health is not Health.unhealthy, r.index))[:size]
    in_place = [r for r in batch if config.order is UpdateOrder.stop_first or r.fixed_ip
                or desired.fixed_ip]
    beside = [r for r in batch if r not in in_place]
    steps: list[Step] = [Replace(r.index, desired.version) for r in in_place]
    steps += [Start(i, desired.version) for i in _free_indexes(current, len(beside))]
    return _progress(steps, f"update {_indexes(r.index for r in batch)} to version "
                            f"{desired.version}")


def _removal_order(replicas: Iterable[Replica]) -> list[Replica]:
    """Unhealthy first, then the highest index first."""
    return sorted(replicas, key=lambda r: (r.health is not Health.unhealthy, -r.index))


def _free_indexes(current: Sequence[Replica], count: int) -> list[int]:
    used = {r.index for r in current}
    free: list[int] = []
    index = 1
    while len(free) < count:
        if index not in used:
            free.append(index)
        index += 1
    return free


def _progress(steps: list[Step], reason: str) -> Decision:
    return Decision(Status.progressing, tuple(steps), reason)


def _indexes(indexes: Iterable[int]) -> str:
    return ", ".join(str(i) for i in indexes)
