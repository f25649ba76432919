"""Scheduler: each filter's rejection, weighing, the plan and the "no valid host" message."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from dockyard.errors import Conflict, InvalidRequest, NoValidHost
from dockyard.scheduler import (
    ClusterView,
    HostView,
    PlacementRequest,
    assume,
    build_pipeline,
    explain,
    place,
)
from dockyard.scheduler.filters import (
    REASON_CORES,
    REASON_DISK,
    REASON_DOWN,
    REASON_DRAINING,
    REASON_MEMORY,
    REASON_NETWORK,
    REASON_NO_KVM,
    REASON_PIDS,
    AntiAffinityFilter,
    ConstraintFilter,
    DiskFits,
    ExclusiveCores,
    Filter,
    HostUp,
    MemoryFits,
    NetworkOnHost,
    PidsFit,
    PinnedHost,
    VmCapable,
)
from dockyard.scheduler.pipeline import no_valid_host_message
from dockyard.scheduler.weighers import (
    FewestInstances,
    FewestTakenCores,
    MostFreeMemory,
    PackWeigher,
    SpreadWeigher,
    Weigher,
)

GiB = 1 << 30
NET = "net1"


def host(name: str = "h1", /, **changes: object) -> HostView:
    base = HostView(
        id=f"id-{name}", name=name, up=True, draining=False, cores=list(range(4)),
        reserved_cores=[0], taken_cores=[], memory_bytes=8 * GiB, memory_reserved_bytes=0,
        networks={NET}, labels={},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def request(**changes: object) -> PlacementRequest:
    base = PlacementRequest(cores=0, memory_bytes=GiB, pids=100, network_id=NET)
    return replace(base, **changes)  # type: ignore[arg-type]


# --- filters, one table ------------------------------------------------------------------

FILTER_CASES = [
    # (filter, host changes, request changes, expected reason)
    (PinnedHost(), {}, {}, None),
    (PinnedHost(), {}, {"host": "h1"}, None),
    (PinnedHost(), {}, {"host": "h2"}, "not the requested host 'h2'"),
    (HostUp(), {}, {}, None),
    (HostUp(), {"up": False}, {}, REASON_DOWN),
    (HostUp(), {"up": False, "draining": True}, {}, REASON_DOWN),
    (HostUp(), {"draining": True}, {}, REASON_DRAINING),
    (NetworkOnHost(), {}, {}, None),
    (NetworkOnHost(), {"networks": {"other"}}, {}, REASON_NETWORK),
    (NetworkOnHost(), {"networks": set()}, {}, REASON_NETWORK),
    (MemoryFits(1.0), {"memory_reserved_bytes": 7 * GiB}, {}, None),  # exactly full
    (MemoryFits(1.0), {"memory_reserved_bytes": 7 * GiB + 1}, {}, REASON_MEMORY),
    (MemoryFits(1.0), {}, {"memory_bytes": 9 * GiB}, REASON_MEMORY),
    (MemoryFits(1.5), {}, {"memory_bytes": 12 * GiB}, None),  # overcommit
    (MemoryFits(1.5), {}, {"memory_bytes": 12 * GiB + 1}, REASON_MEMORY),
    (MemoryFits(1.0), {"memory_reserved_bytes": 8 * GiB}, {"memory_bytes": None}, None),
    # a host already over budget (its memory shrank) takes nothing more, not even 0 bytes
    (MemoryFits(1.0), {"memory_reserved_bytes": 9 * GiB}, {"memory_bytes": None}, REASON_MEMORY),
    # a VM's memory is never over-committed: the ratio counts as 1 for it
    (MemoryFits(1.5), {}, {"memory_bytes": 8 * GiB, "vm": True}, None),
    (MemoryFits(1.5), {}, {"memory_bytes": 8 * GiB + 1, "vm": True}, REASON_MEMORY),
    (MemoryFits(1.5), {"memory_reserved_bytes": 7 * GiB}, {"memory_bytes": GiB + 1,
                                                           "vm": True}, REASON_MEMORY),
    (VmCapable(), {}, {}, None),  # a container goes anywhere
    (VmCapable(), {"vm": True}, {"vm": True}, None),
    (VmCapable(), {}, {"vm": True}, REASON_NO_KVM),
    (PidsFit(), {}, {"pids": 10**9}, None),  # no budget on the host
    (PidsFit(), {"pids_limit_total": 1000, "pids_reserved": 900}, {"pids": 100}, None),
    (PidsFit(), {"pids_limit_total": 1000, "pids_reserved": 901}, {"pids": 100}, REASON_PIDS),
    (PidsFit(), {"pids_limit_total": 1000, "pids_reserved": 1000}, {"pids": 0}, None),
    (ExclusiveCores(), {}, {"cores": 0}, None),
    (ExclusiveCores(), {}, {"cores": 2}, None),  # cores 2,3; core 1 stays shared
    (ExclusiveCores(), {}, {"cores": 3}, REASON_CORES),  # would empty the shared pool
    (ExclusiveCores(), {"taken_cores": [3]}, {"cores": 2}, REASON_CORES),
    (ExclusiveCores(), {"taken_cores": [1, 2, 3]}, {"cores": 0}, None),
    (PidsFit(2.0), {"pids_limit_total": 1000, "pids_reserved": 1900}, {"pids": 100}, None),
    (PidsFit(2.0), {"pids_limit_total": 1000, "pids_reserved": 1901}, {"pids": 100},
     REASON_PIDS),
    (DiskFits(1.0), {}, {"disk_bytes": 10**15}, None),  # no budget on the host
    (DiskFits(1.0), {"disk_bytes": 10 * GiB, "disk_reserved_bytes": 9 * GiB},
     {"disk_bytes": GiB}, None),
    (DiskFits(1.0), {"disk_bytes": 10 * GiB, "disk_reserved_bytes": 9 * GiB},
     {"disk_bytes": GiB + 1}, REASON_DISK),
    (DiskFits(1.5), {"disk_bytes": 10 * GiB, "disk_reserved_bytes": 14 * GiB},
     {"disk_bytes": GiB}, None),
    (DiskFits(1.0), {"disk_bytes": 10 * GiB, "disk_reserved_bytes": 11 * GiB}, {}, REASON_DISK),
    (ConstraintFilter(), {}, {}, None),
    (ConstraintFilter(), {"labels": {"zone": "eu"}}, {"constraints": {"zone": "eu"}}, None),
    (ConstraintFilter(), {"labels": {"zone": "us"}}, {"constraints": {"zone": "eu"}},
     "constraint zone=eu not met"),
    (ConstraintFilter(), {}, {"constraints": {"zone": "eu"}}, "constraint zone=eu not met"),
    # several unmet: the first key in order names the host
    (ConstraintFilter(), {"labels": {"zone": "eu"}},
     {"constraints": {"zone": "us", "disk": "ssd"}}, "constraint disk=ssd not met"),
    (ConstraintFilter(), {"labels": {"zone": "eu", "disk": "ssd"}},
     {"constraints": {"zone": "eu", "disk": "ssd"}}, None),
    (AntiAffinityFilter(), {"groups": frozenset({"web"})}, {}, None),
    (AntiAffinityFilter(), {}, {"anti_affinity": "web"}, None),
    (AntiAffinityFilter(), {"groups": frozenset({"db"})}, {"anti_affinity": "web"}, None),
    (AntiAffinityFilter(), {"groups": frozenset({"db", "web"})}, {"anti_affinity": "web"},
     "anti-affinity: group web already on host"),
]


@pytest.mark.parametrize(("check", "host_changes", "request_changes", "reason"), FILTER_CASES)
def test_filter(
    check: Filter, host_changes: dict[str, object], request_changes: dict[str, object],
    reason: str | None,
) -> None:
    one, req = host(**host_changes), request(**request_changes)
    assert check.feasible(one, req) == reason
    # the vectorized form says the same about a one-host view
    index = ClusterView(hosts=[one]).index()
    rejections = [r for r, mask in check.rejects(index, req) if mask[0]]
    assert (rejections[0] if rejections else None) == reason


def test_every_pipeline_filter_is_covered_by_the_table() -> None:
    tested = {type(check) for check, *_ in FILTER_CASES}
    assert {type(check) for check in build_pipeline().filters} == tested


# --- weighers -----------------------------------------------------------------------------

SPREAD_IDLE = (7 / 8 + 3 / 4 + 1.0) / 3  # the default host with the default request

WEIGHER_CASES = [
    # (weigher, host changes, request changes, expected score)
    (MostFreeMemory(1.0), {}, {}, 7 / 8),
    (MostFreeMemory(1.0), {"memory_reserved_bytes": 4 * GiB}, {}, 3 / 8),
    (MostFreeMemory(1.0), {}, {"memory_bytes": None}, 1.0),
    (MostFreeMemory(2.0), {}, {"memory_bytes": 8 * GiB}, 0.5),
    (MostFreeMemory(1.0), {"memory_reserved_bytes": 20 * GiB}, {}, 0.0),  # clamped
    (MostFreeMemory(1.0), {"memory_bytes": 0}, {}, 0.0),
    (FewestTakenCores(), {}, {}, 3 / 4),  # core 0 reserved
    (FewestTakenCores(), {}, {"cores": 2}, 1 / 4),
    (FewestTakenCores(), {"taken_cores": [3]}, {"cores": 1}, 1 / 4),
    (FewestTakenCores(), {"cores": []}, {}, 0.0),
    (FewestInstances(), {}, {}, 1.0),
    (FewestInstances(), {"instances": 3}, {}, 1 / 4),
    (SpreadWeigher(1.0), {}, {}, SPREAD_IDLE),
    (SpreadWeigher(1.0), {"instances": 1, "memory_reserved_bytes": 4 * GiB}, {},
     (3 / 8 + 3 / 4 + 1 / 2) / 3),
    (SpreadWeigher(2.0), {}, {"memory_bytes": 8 * GiB, "cores": 2}, (1 / 2 + 1 / 4 + 1) / 3),
    (PackWeigher(1.0), {}, {}, 1 - SPREAD_IDLE),
    (PackWeigher(1.0), {"instances": 1, "memory_reserved_bytes": 4 * GiB}, {},
     1 - (3 / 8 + 3 / 4 + 1 / 2) / 3),
]


@pytest.mark.parametrize(("weigher", "host_changes", "request_changes", "score"),
                         WEIGHER_CASES)
def test_weigher(
    weigher: Weigher, host_changes: dict[str, object], request_changes: dict[str, object],
    score: float,
) -> None:
    one, req = host(**host_changes), request(**request_changes)
    got = weigher.score(one, req)
    assert got == pytest.approx(score)
    assert 0.0 <= got <= 1.0
    # the vectorized form computes the very same number
    assert weigher.scores(ClusterView(hosts=[one]).index(), req)[0] == got


def test_strategy_chooses_the_weigher() -> None:
    assert [type(w) for w, _ in build_pipeline("spread").weighers] == [SpreadWeigher]
    assert [type(w) for w, _ in build_pipeline("pack").weighers] == [PackWeigher]


# --- place --------------------------------------------------------------------------------

def test_place_prefers_most_headroom_and_counts_rejections() -> None:
    view = ClusterView(hosts=[
        host("busy", memory_reserved_bytes=6 * GiB),
        host("idle"),
        host("down", up=False),
        host("elsewhere", networks={"net2"}),
    ])
    plan = place(request(cores=1), view)
    assert (plan.host_id, plan.host_name, plan.cores) == ("id-idle", "idle", [3])
    assert plan.rejected == {REASON_DOWN: 1, REASON_NETWORK: 1}
    assert plan.feasible == 2
    verdicts = {v.name: v for v in explain(request(cores=1), view)}
    assert verdicts["idle"].score == plan.score
    assert verdicts["busy"].score is not None and verdicts["busy"].score < plan.score
    assert verdicts["down"].score is None
    assert 0.0 <= plan.score <= 1.0


def _place_each(req: PlacementRequest, view: ClusterView, count: int) -> list[str]:
    """The hosts of `count` placements of `req` in a row, each assumed before the next."""
    chosen = []
    for _ in range(count):
        plan = place(req, view)
        chosen.append(plan.host_name)
        view = assume(view, plan, req)
    return chosen


def test_placement_spreads() -> None:
    view = ClusterView(hosts=[host("a"), host("b"), host("c")])
    assert _place_each(request(memory_bytes=None), view, 6) == ["a", "b", "c", "a", "b", "c"]


def test_placement_packs() -> None:
    view = ClusterView(hosts=[host("a"), host("b", instances=1)])
    assert _place_each(request(strategy="pack"), view, 3) == ["b", "b", "b"]


def test_anti_affinity_holds() -> None:
    view = ClusterView(hosts=[host("a"), host("b"),
                                      host("c", groups=frozenset({"web"}))])
    req = request(anti_affinity="web", strategy="pack")  # pack would reuse a host otherwise
    first = place(req, view)
    view = assume(view, first, req)
    second = place(req, view)
    assert {first.host_name, second.host_name} == {"a", "b"}
    with pytest.raises(NoValidHost) as info:
        place(req, assume(view, second, req))
    assert info.value.message == "no valid host: 3 hosts: anti-affinity: group web already on host"
    # another group is not affected
    assert place(request(anti_affinity="db"), view).host_name in {"a", "b", "c"}


def test_a_spread_group_prefers_hosts_without_one_and_never_refuses() -> None:
    """A stack's replicas (`spread_group`): each to a host without one of the group, even a
    fuller one; once every host has one, by capacity again — never "no valid host"."""
    view = ClusterView(hosts=[host("a"), host("b", memory_reserved_bytes=6 * GiB),
                              host("c", memory_reserved_bytes=7 * GiB)])
    chosen = _place_each(request(spread_group="shop-web"), view, 5)
    assert chosen[:3] == ["a", "b", "c"]  # b and c are fuller than a: the group decides
    assert chosen[3:] == ["a", "a"]  # all hold one: the most headroom
    # without the group, the same view's spread strategy goes by capacity alone
    assert place(request(), view).host_name == "a"
    # another group is not affected: its first replica goes where capacity says
    other = place(request(spread_group="shop-api"), view)
    assert other.host_name == "a"


def test_constraints_filter() -> None:
    view = ClusterView(hosts=[
        host("a", labels={"zone": "eu"}), host("b", labels={"zone": "us"}),
        host("c", labels={"zone": "us", "disk": "ssd"}), host("d"),
    ])
    plan = place(request(constraints={"zone": "us", "disk": "ssd"}), view)
    assert plan.host_name == "c"
    assert plan.rejected == {"constraint disk=ssd not met": 3}
    with pytest.raises(NoValidHost) as info:
        place(request(constraints={"zone": "mars"}), view)
    assert info.value.message == "no valid host: 4 hosts: constraint zone=mars not met"


def test_place_picks_highest_free_cores_on_the_chosen_host() -> None:
    view = ClusterView(hosts=[host(cores=list(range(8)), taken_cores=[7, 5])])
    assert place(request(cores=3), view).cores == [3, 4, 6]


def test_place_ties_break_by_name() -> None:
    view = ClusterView(hosts=[host("b"), host("a"), host("c")])
    plan = place(request(), view)
    assert plan.host_name == "a"
    assert len({v.score for v in explain(request(), view)}) == 1


def test_place_pinned_host_wins_even_if_worse() -> None:
    view = ClusterView(hosts=[host("full", memory_reserved_bytes=6 * GiB), host("idle")])
    plan = place(request(host="full"), view)
    assert plan.host_name == "full"
    assert plan.rejected == {"not the requested host 'full'": 1}


def test_place_uses_the_view_overcommit_ratio() -> None:
    hosts = [host(memory_reserved_bytes=8 * GiB)]
    with pytest.raises(NoValidHost):
        place(request(), ClusterView(hosts=hosts))
    assert place(request(), ClusterView(hosts=hosts, memory_overcommit=1.5)).host_name == "h1"


def test_no_valid_host_counts_hosts_per_reason() -> None:
    view = ClusterView(hosts=[
        host("m1", memory_reserved_bytes=8 * GiB),
        host("m2", memory_reserved_bytes=8 * GiB),
        host("m3", memory_reserved_bytes=8 * GiB),
        host("c1", taken_cores=[2, 3]),
    ])
    with pytest.raises(NoValidHost) as info:
        place(request(cores=1), view)
    assert info.value.message == (
        "no valid host: 3 hosts: not enough memory; 1 host: not enough free cores")
    assert isinstance(info.value, Conflict)
    assert info.value.status == 409


@pytest.mark.parametrize(
    ("reasons", "message"),
    [
        ([], "no valid host: the cluster has no hosts"),
        ([REASON_DOWN], "no valid host: 1 host: host is down"),
        ([REASON_PIDS, REASON_DOWN, REASON_PIDS, REASON_DRAINING],
         "no valid host: 2 hosts: not enough pids; 1 host: host is down; "
         "1 host: host is draining"),
    ],
)
def test_no_valid_host_message(reasons: list[str], message: str) -> None:
    assert no_valid_host_message(Counter(reasons)) == message


def test_place_on_empty_cluster() -> None:
    with pytest.raises(NoValidHost, match="the cluster has no hosts"):
        place(request(), ClusterView(hosts=[]))


def test_pinned_to_unknown_host() -> None:
    view = ClusterView(hosts=[host("a"), host("b")])
    with pytest.raises(NoValidHost) as info:
        place(request(host="zz"), view)
    assert info.value.message == "no valid host: 2 hosts: not the requested host 'zz'"


def test_first_failing_filter_decides_the_reason() -> None:
    # down, off-network and full: the liveness filter runs first and names it.
    bad = host(up=False, networks=set(), memory_reserved_bytes=8 * GiB)
    assert [(v.name, v.reason) for v in explain(request(), ClusterView(hosts=[bad]))] == [
        ("h1", REASON_DOWN)]


def test_explain_matches_place() -> None:
    view = ClusterView(hosts=[
        host("ok"),
        host("draining", draining=True),
        host("nomem", memory_bytes=GiB // 2),
        host("nopids", pids_limit_total=50),
        host("nocores", cores=[0, 1]),
    ])
    req = request(cores=1)
    assert [(v.name, v.reason) for v in explain(req, view)] == [
        ("ok", None),
        ("draining", REASON_DRAINING),
        ("nomem", REASON_MEMORY),
        ("nopids", REASON_PIDS),
        ("nocores", REASON_CORES),
    ]
    plan = place(req, view)
    assert plan.host_name == "ok"
    assert plan.rejected == Counter(v.reason for v in explain(req, view) if v.reason)


@pytest.mark.parametrize(
    "changes", [{"cores": -1}, {"memory_bytes": -1}, {"pids": -5}, {"disk_bytes": -1}],
)
def test_request_rejects_negative_quantities(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match="cannot be negative"):
        request(**changes)


@pytest.mark.parametrize("ratio", [0.0, -1.0])
@pytest.mark.parametrize("what", ["memory", "disk", "pids"])
def test_view_rejects_non_positive_overcommit(what: str, ratio: float) -> None:
    with pytest.raises(InvalidRequest, match=f"{what} overcommit"):
        ClusterView(hosts=[], **{f"{what}_overcommit": ratio})


def test_request_rejects_unknown_strategy() -> None:
    with pytest.raises(InvalidRequest, match="strategy"):
        request(strategy="random")
