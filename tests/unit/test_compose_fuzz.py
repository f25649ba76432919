"""Generated inputs (hypothesis): in the suite 150 derandomized examples (the same every run),
under `make soak` 5000 random ones (tests/budget.py; hypothesis prints how to replay a failure).

* load_stack answers every generated compose file with a StackSpec or a ComposeError (a 422
  naming paths), never another exception;
* the rollout planner, from any replicas and any desired state, converges to `done` (no
  failures injected) and never starts a replica on an index in use.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.compose import ComposeError, ComposeFile, load_stack
from dockyard.model.stack import UpdateConfig, UpdateOrder
from dockyard.stacks.planner import (
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
from tests.budget import loop_count, soaking

SETTINGS = settings(max_examples=loop_count(suite=150, soak=5000), derandomize=not soaking(),
                    database=None, deadline=None, suppress_health_check=list(HealthCheck))
pick = st.sampled_from
WEIRD = pick(["", "x", "-1", "0", "1.5", "9" * 25, "1e400", "nan", "10.0.0.5", "10.0.0.0/33",
              "1m", "-1s", "256M", "/d", "data:/d", "data:/d:z", "./x:/d", ":/d", "data:/..",
              "${X}", "$", "node.labels.a==", "CMD", "CMD-SHELL", "NONE", "1:30"])
NUMBER = st.one_of(st.integers(-3, 2**70), st.floats(), WEIRD)
IMAGE = pick(["busybox", "busybox:1", "Bad Image", ""])
SERVICE = st.fixed_dictionaries({"image": IMAGE}, optional={
    "command": st.one_of(WEIRD, st.lists(WEIRD, max_size=3)),
    "environment": st.one_of(
        st.lists(pick(["A=1", "B", "=x", "C=\n", "1X=2"]), max_size=3),
        st.dictionaries(pick(["A", "B-C", ""]), st.one_of(st.none(), NUMBER, st.booleans()),
                        max_size=3)),
    "env_file": st.lists(WEIRD, max_size=2),
    "volumes": st.lists(st.one_of(WEIRD, st.fixed_dictionaries(
        {"type": pick(["volume", "bind"]), "target": WEIRD}, optional={"source": WEIRD})),
        max_size=3),
    "networks": st.dictionaries(pick(["n", "default", "m"]), st.one_of(
        st.none(), st.fixed_dictionaries({}, optional={"ipv4_address": WEIRD})), max_size=2),
    "hostname": WEIRD,
    "healthcheck": st.fixed_dictionaries({}, optional={
        "test": st.one_of(WEIRD, st.lists(WEIRD, max_size=3)), "interval": WEIRD,
        "retries": NUMBER, "disable": st.booleans()}),
    "depends_on": st.lists(pick(["web", "db", "zz"]), max_size=2),
    "labels": st.dictionaries(pick(["a", "dockyard.x"]), WEIRD, max_size=2),
    "deploy": st.fixed_dictionaries({}, optional={
        "replicas": st.integers(-2, 2**40),
        "resources": st.fixed_dictionaries({}, optional={"limits": st.fixed_dictionaries(
            {}, optional={"cpus": NUMBER, "memory": WEIRD, "pids": st.integers(-5, 2**64)})}),
        "placement": st.fixed_dictionaries({"constraints": st.lists(WEIRD, max_size=2)}),
        "update_config": st.fixed_dictionaries({}, optional={
            "parallelism": st.integers(-3, 10), "delay": WEIRD, "max_failure_ratio": NUMBER,
            "failure_action": pick(["pause", "continue", "x"])})}),
    "x-dockyard": st.fixed_dictionaries({}, optional={
        "cores": NUMBER, "http": st.fixed_dictionaries({}, optional={"host": WEIRD,
                                                                     "port": NUMBER})}),
})
NETWORK = st.fixed_dictionaries({}, optional={
    "external": st.booleans(), "ipam": st.fixed_dictionaries({"config": st.lists(
        st.fixed_dictionaries({}, optional={"subnet": WEIRD, "gateway": WEIRD}),
        max_size=2)})})
FILE = st.fixed_dictionaries(
    {"services": st.dictionaries(pick(["web", "db"]), SERVICE, min_size=1, max_size=2)},
    optional={"networks": st.dictionaries(pick(["n", "m"]), st.one_of(st.none(), NETWORK),
                                          max_size=2),
              "volumes": st.dictionaries(pick(["data"]), st.none(), max_size=1)})


@pytest.mark.soak
@SETTINGS
@given(FILE, st.booleans())
def test_load_stack_answers_a_spec_or_a_compose_error(doc: dict[str, Any], twice: bool) -> None:
    text = yaml.safe_dump(doc)
    files = [ComposeFile("a.yaml", text)] * (2 if twice else 1)
    try:
        load_stack(files, name="s", environ={"X": "1"}, read_file=lambda path: "A=1")
    except ComposeError as exc:
        assert exc.problems and all(": " in problem for problem in exc.problems)


REPLICAS = st.lists(st.builds(Replica, index=st.integers(1, 8), version=st.integers(1, 3),
                              health=st.sampled_from(list(Health)), fixed_ip=st.just(False)),
                    max_size=8, unique_by=lambda r: r.index)
CONFIG = st.builds(UpdateConfig, parallelism=st.integers(0, 4),
                   order=st.sampled_from(list(UpdateOrder)))


@pytest.mark.soak
@SETTINGS
@given(REPLICAS, st.integers(0, 6), CONFIG)
def test_the_planner_converges_from_any_state(current: list[Replica], wanted: int,
                                              config: UpdateConfig) -> None:
    desired = Desired(version=3, replicas=wanted, config=config)
    replicas = {r.index: r for r in current}
    for _ in range(60):
        decision = plan(sorted(replicas.values(), key=lambda r: r.index), desired,
                        Progress(updating=False))
        if decision.status is Status.done:
            break
        if decision.status is Status.waiting:  # the health checks report
            replicas = {i: Replica(i, r.version, Health.healthy) for i, r in replicas.items()}
            continue
        assert decision.status is Status.progressing and decision.steps
        for step in decision.steps:
            if isinstance(step, Stop | Replace):
                assert step.index in replicas
                del replicas[step.index]
            if isinstance(step, Start):
                assert step.index not in replicas
            if isinstance(step, Start | Replace):
                replicas[step.index] = Replica(step.index, step.version, Health.starting)
            if isinstance(step, Restart):  # the health repair's first step
                old = replicas[step.index]
                replicas[step.index] = Replica(step.index, old.version, Health.starting,
                                               restarts=old.restarts + 1)
    else:
        raise AssertionError(f"no convergence from {current} to {desired}")
    assert sorted(r.version for r in replicas.values()) == [3] * wanted
    # unhealthy replicas were repaired (restarted); none is left starting
    assert all(r.health is not Health.starting for r in replicas.values())
