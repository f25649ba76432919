"""One `dev-cluster up --criu` (criu_cluster.py) shared by the live-migration modules of this
package, and removed right after its last test (package scope): each module adds its own
networks and instances on it. One cluster instead of one per module saves a 3-host cluster's
start and stop (about 20 s of the suite)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import DevCluster
from tests.e2e.criu_cluster import criu_cluster


@pytest.fixture(scope="package")
def criu() -> Iterator[DevCluster]:
    yield from criu_cluster()
