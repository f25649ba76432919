"""The scheduler on a real 3-host cluster: spread by default, anti-affinity, constraints,
`--explain` naming the rejecting filter, host labels from `host add`-style labels."""

from __future__ import annotations

import json
from collections import Counter

from tests.e2e.conftest import DevCluster


def hosts_of(cluster: DevCluster, names: list[str]) -> list[str]:
    return [json.loads(cluster.ok("show", n, "--json"))["host"] for n in names]


def instance_counts(cluster: DevCluster) -> dict[str, int]:
    hosts = json.loads(cluster.ok("host", "list", "--json"))["items"]
    return {h["name"]: h["instances"] for h in hosts
            if h["state"] == "up" and not h.get("draining")}


def test_default_placement_spreads(cluster: DevCluster) -> None:
    """Each launch goes to a least-loaded host (other tests may have left the hosts uneven)."""
    names = [f"spread{i}" for i in range(3)]
    try:
        for name in names:
            counts = instance_counts(cluster)
            cluster.ok("launch", "dockyard/busybox", name, "--no-lxcfs")
            chosen = hosts_of(cluster, [name])[0]
            assert counts[chosen] == min(counts.values()), (chosen, counts)
    finally:
        for name in names:
            cluster.cli("delete", name, "--force")


def test_anti_affinity_holds_and_then_refuses(cluster: DevCluster) -> None:
    names = [f"aa{i}" for i in range(3)]
    try:
        for name in names:
            cluster.ok("launch", "dockyard/busybox", name, "--anti-affinity", "web",
                       "--strategy", "pack", "--no-lxcfs")
        assert Counter(hosts_of(cluster, names)).most_common(1)[0][1] == 1
        fourth = cluster.cli("launch", "dockyard/busybox", "aa3", "--anti-affinity", "web",
                             "--no-lxcfs")
        assert fourth.returncode != 0 and "no valid host" in fourth.stderr
        assert "3 hosts" in fourth.stderr and "anti-affinity" in fourth.stderr
    finally:
        for name in [*names, "aa3"]:
            cluster.cli("delete", name, "--force")


def test_constraints_filter_and_explain_names_the_filter(cluster: DevCluster) -> None:
    labels = {h["name"]: h.get("labels", {})
              for h in json.loads(cluster.ok("host", "list", "--json"))["items"]}
    host = sorted(labels)[0]
    # a constraint no host meets: refused, with the filter named, nothing created
    refused = cluster.cli("launch", "dockyard/busybox", "nowhere", "--constraint", "zone=mars",
                          "--no-lxcfs")
    assert refused.returncode != 0 and "constraint zone=mars" in refused.stderr
    assert cluster.cli("show", "nowhere").returncode != 0
    explained = cluster.cli("launch", "dockyard/busybox", "nowhere", "--constraint",
                            "zone=mars", "--explain")
    assert explained.returncode != 0
    assert explained.stdout.count("constraint") >= 3
    # pinning by name works through the same pipeline
    try:
        inst = json.loads(cluster.ok("launch", "dockyard/busybox", "pinned", "--host", host,
                                     "--no-lxcfs", "--json"))
        assert inst["host"] == host
    finally:
        cluster.cli("delete", "pinned", "--force")
