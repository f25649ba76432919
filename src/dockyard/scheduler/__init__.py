"""The scheduler: a pure function from a placement request and a cluster snapshot to a plan.

See README.md in this folder for the pipeline. No I/O: the caller reads the snapshot from the
store and commits the returned `Plan` under a version check.
"""

from dockyard.scheduler.pipeline import HostVerdict, assume, build_pipeline, explain, place
from dockyard.scheduler.snapshot import ClusterSnapshot, HostSnapshot, PlacementRequest, Plan

__all__ = [
    "ClusterSnapshot",
    "HostSnapshot",
    "HostVerdict",
    "PlacementRequest",
    "Plan",
    "assume",
    "build_pipeline",
    "explain",
    "place",
]
