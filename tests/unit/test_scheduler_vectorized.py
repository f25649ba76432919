"""The vectorized scheduler agrees with the per-host specification on random views.

`place` and `explain` run numpy masks over `HostIndex`; `Pipeline.reject_reason` and
`Pipeline.score` are the readable per-host form. Same reasons, same scores (bit for bit), same
chosen host, same counts; and `assume` updates the index as a rebuild from scratch would.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from dockyard.errors import NoValidHost
from dockyard.scheduler import (
    ClusterView,
    HostView,
    PlacementRequest,
    assume,
    build_pipeline,
    explain,
    place,
)
from dockyard.scheduler.index import HostIndex
from dockyard.scheduler.weighers import spread_member

GiB = 1 << 30
LABELS = {"zone": ["eu", "us", "ap"], "disk": ["ssd", "hdd"]}
GROUPS = ["web", "db", "cache"]


def random_host(rng: random.Random, i: int) -> HostView:
    cores = list(range(rng.choice([0, 1, 2, 4, 8])))
    reserved = [c for c in cores if rng.random() < 0.2]
    taken = [c for c in cores if c not in reserved and rng.random() < 0.4]
    labels = {k: rng.choice(v) for k, v in LABELS.items() if rng.random() < 0.7}
    return HostView(
        # a few duplicate-looking names sort by id: the tie-break's second key
        id=f"id-{rng.randrange(10**6):06d}", name=f"h{rng.randrange(40):02d}-{i}",
        up=rng.random() > 0.1, draining=rng.random() < 0.1, cores=cores,
        reserved_cores=reserved, taken_cores=taken,
        memory_bytes=rng.choice([0, 4 * GiB, 8 * GiB, 16 * GiB]),
        memory_reserved_bytes=rng.randrange(0, 12) * GiB // 2,
        networks={n for n in ("net1", "net2") if rng.random() < 0.8}, labels=labels,
        pids_limit_total=rng.choice([None, 10_000, 40_000]),
        pids_reserved=rng.randrange(0, 30_000),
        disk_bytes=rng.choice([None, 100 * GiB]), disk_reserved_bytes=rng.randrange(0, 110) * GiB,
        groups=frozenset([*(g for g in GROUPS if rng.random() < 0.2),
                          *(spread_member(g) for g in GROUPS if rng.random() < 0.3)]),
        instances=rng.randrange(0, 5))


def random_request(rng: random.Random, names: list[str]) -> PlacementRequest:
    constraints = {k: rng.choice(v) for k, v in LABELS.items() if rng.random() < 0.3}
    return PlacementRequest(
        cores=rng.choice([0, 0, 1, 2, 3]), memory_bytes=rng.choice([None, GiB // 2, 2 * GiB]),
        pids=rng.choice([0, 100, 4096]), network_id=rng.choice(["net1", "net2"]),
        host=rng.choice([None] * 8 + names[:1] + ["nosuch"]), constraints=constraints,
        anti_affinity=rng.choice([None, None, *GROUPS]),
        spread_group=rng.choice([None, None, *GROUPS]),
        strategy=rng.choice(["spread", "pack"]), disk_bytes=rng.choice([None, 5 * GiB]))


def random_view(rng: random.Random) -> ClusterView:
    hosts = [random_host(rng, i) for i in range(rng.randrange(0, 30))]
    return ClusterView(hosts=hosts, memory_overcommit=rng.choice([1.0, 1.5]),
                           disk_overcommit=rng.choice([1.0, 1.2]),
                           pids_overcommit=rng.choice([1.0, 2.0]))


def reference_place(request: PlacementRequest, view: ClusterView) -> str | None:
    """The per-host specification of `place`: best score, ties by (name, id)."""
    pipeline = build_pipeline(request.strategy, view.memory_overcommit,
                              view.disk_overcommit, view.pids_overcommit,
                              request.spread_group is not None)
    feasible = [h for h in view.hosts if pipeline.reject_reason(h, request) is None]
    if not feasible:
        return None
    return min(feasible, key=lambda h: (-pipeline.score(h, request), h.name, h.id)).name


@pytest.mark.parametrize("seed", range(200))
def test_vectorized_agrees_with_per_host_form(seed: int) -> None:
    rng = random.Random(seed)
    view = random_view(rng)
    request = random_request(rng, [h.name for h in view.hosts])
    pipeline = build_pipeline(request.strategy, view.memory_overcommit,
                              view.disk_overcommit, view.pids_overcommit,
                              request.spread_group is not None)
    verdicts = explain(request, view)
    assert [v.name for v in verdicts] == [h.name for h in view.hosts]
    for host, verdict in zip(view.hosts, verdicts, strict=True):
        assert verdict.reason == pipeline.reject_reason(host, request), host
        if verdict.reason is None:
            assert verdict.score == pipeline.score(host, request)
    expected = reference_place(request, view)
    counts = Counter(v.reason for v in verdicts if v.reason is not None)
    if expected is None:
        with pytest.raises(NoValidHost):
            place(request, view)
        return
    plan = place(request, view)
    assert plan.host_name == expected
    assert plan.rejected == counts
    assert plan.feasible == sum(v.reason is None for v in verdicts)


def assert_same_index(got: HostIndex, fresh: HostIndex) -> None:
    for name in ("rank", "down", "draining", "memory", "memory_reserved", "disk",
                 "disk_reserved", "pids", "pids_reserved", "cores", "free_cores", "instances"):
        assert np.array_equal(getattr(got, name), getattr(fresh, name)), name
    for group in GROUPS:
        assert np.array_equal(got.has_group(group), fresh.has_group(group)), group


@pytest.mark.parametrize("seed", range(20))
def test_assume_matches_a_rebuilt_index(seed: int) -> None:
    rng = random.Random(1000 + seed)
    view = random_view(rng)
    for group in GROUPS:  # memoize masks before the placements, so that they must be updated
        view.index().has_group(group)
    for _ in range(15):
        request = random_request(rng, [])
        try:
            plan = place(request, view)
        except NoValidHost:
            continue
        view = assume(view, plan, request)
        rebuilt = ClusterView(hosts=list(view.hosts),
                                  memory_overcommit=view.memory_overcommit,
                                  disk_overcommit=view.disk_overcommit,
                                  pids_overcommit=view.pids_overcommit)
        assert_same_index(view.index(), rebuilt.index())
        chosen = view.hosts[view.index().position[plan.host_name]]
        assert set(plan.cores) <= set(chosen.taken_cores)


def test_assume_leaves_the_original_view_alone() -> None:
    rng = random.Random(7)
    hosts = [random_host(rng, i) for i in range(5)]
    hosts = [HostView(**{**h.__dict__, "up": True, "draining": False,
                             "networks": {"net1"}, "memory_bytes": 8 * GiB,
                             "memory_reserved_bytes": 0, "disk_bytes": None,
                             "pids_limit_total": None}) for h in hosts]
    view = ClusterView(hosts=hosts)
    before = view.index().memory_reserved.copy()
    request = PlacementRequest(cores=0, memory_bytes=GiB, pids=10, network_id="net1")
    after = assume(view, place(request, view), request)
    assert np.array_equal(view.index().memory_reserved, before)
    assert after.index().memory_reserved.sum() == before.sum() + GiB
