"""The scheduler: a pure function from a placement request and a cluster view to a plan.

See README.md in this folder for the pipeline. No I/O: the caller reads the view from the
store and commits the returned `Plan` under a version check.
"""

from dockyard.scheduler.pipeline import HostVerdict, assume, build_pipeline, explain, place
from dockyard.scheduler.view import ClusterView, HostView, PlacementRequest, Plan

__all__ = [
    "ClusterView",
    "HostView",
    "HostVerdict",
    "PlacementRequest",
    "Plan",
    "assume",
    "build_pipeline",
    "explain",
    "place",
]
