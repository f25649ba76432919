"""Project quotas: the pure rule (table-driven), usage counting, and the lock that keeps
concurrent claims of one project within its limits (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import QuotaExceeded
from dockyard.model.ids import new_id
from dockyard.model.tenancy import QuotaUpdate, QuotaValues
from dockyard.server.bootstrap import init_store
from dockyard.store import quotas
from dockyard.store.db import Database
from dockyard.store.tables import InstanceRow, NetworkRow, VolumeRow
from tests.postgres import fresh_database

M = 1 << 20
Claim = quotas.Claim


@pytest.mark.parametrize(("limits", "usage", "claim", "reasons"), [
    (QuotaValues(), QuotaValues(instances=100), Claim(instances=1), []),
    (QuotaValues(instances=3), QuotaValues(instances=2), Claim(instances=1), []),
    (QuotaValues(instances=3), QuotaValues(instances=3), Claim(instances=1),
     ["instances 3 used + 1 requested > quota 3"]),
    (QuotaValues(memory_bytes=256 * M), QuotaValues(memory_bytes=192 * M),
     Claim(instances=1, memory_bytes=128 * M),
     ["memory_bytes 192M used + 128M requested > quota 256M"]),
    (QuotaValues(memory_bytes=256 * M), QuotaValues(), Claim(instances=1, memory_bytes=None),
     ["memory quota 256M needs a memory limit on every instance"]),
    (QuotaValues(instances=1, cores=1), QuotaValues(instances=1, cores=1),
     Claim(instances=1, cores=1), ["instances 1 used + 1 requested > quota 1",
                                   "cores 1 used + 1 requested > quota 1"]),
    # over a lowered limit already: claims that do not add to it still pass
    (QuotaValues(instances=1, memory_bytes=64 * M), QuotaValues(instances=5, memory_bytes=M),
     Claim(memory_bytes=32 * M), []),
    (QuotaValues(volumes=0), QuotaValues(), Claim(volumes=1),
     ["volumes 0 used + 1 requested > quota 0"]),
    (QuotaValues(snapshots=2), QuotaValues(snapshots=1), Claim(snapshots=1), []),
    (QuotaValues(cores=0), QuotaValues(), Claim(instances=1), []),
])
def test_exceeded(limits: QuotaValues, usage: QuotaValues, claim: quotas.Claim,
                  reasons: list[str]) -> None:
    assert quotas.exceeded(limits, usage, claim) == reasons


def test_update_changes_only_given_fields() -> None:
    assert QuotaUpdate.model_validate({"memory": "8G"}).changes() == {"memory_bytes": 8 << 30}
    assert QuotaUpdate.model_validate({"instances": None, "cores": 2}).changes() == {
        "instances": None, "cores": 2}
    with pytest.raises(ValueError):
        QuotaUpdate.model_validate({"instances": -1})


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_database("quotas") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, str]]:
    url = (f"sqlite:///{tmp_path / 'd.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    database = Database(url)
    project = init_store(database)
    with database.session() as sess:  # the module's PostgreSQL database is reused
        sess.query(InstanceRow).delete()
        sess.query(VolumeRow).delete()
        if sess.get(NetworkRow, "n1") is None:
            sess.add(NetworkRow(id="n1", name="n1", project_id=project, subnet="10.0.0.0/24",
                                gateway="10.0.0.1", dns=[], bridge="dybn1"))
    yield database, project
    database.close()


def _instance(project: str, memory: int | None, cores: int = 0) -> InstanceRow:
    iid = new_id()
    return InstanceRow(id=iid, name=f"i-{iid[:8]}", project_id=project, network_id="n1",
                       image="x", hostname="h", ip=iid[:8], mac="m", state="creating",
                       desired_state="running",
                       limits={"cores": cores, "memory_bytes": memory})


def test_usage_and_enforce(db: tuple[Database, str]) -> None:
    database, project = db
    with database.session() as sess:
        quotas.enforce(sess, project, Claim(instances=50))  # no quota row: no limits
        sess.add(_instance(project, 64 * M, cores=1))
        sess.add(_instance(project, None))
        sess.add(VolumeRow(id=new_id(), name="v", project_id=project))
        quotas.update(sess, project, {"instances": 3, "memory_bytes": 128 * M})
    with database.session() as sess:
        assert quotas.usage(sess, project) == QuotaValues(
            instances=2, cores=1, memory_bytes=64 * M, volumes=1, snapshots=0)
        quotas.enforce(sess, project, Claim(instances=1, memory_bytes=64 * M))
        with pytest.raises(QuotaExceeded, match=r"quota of project default exceeded: "
                                                r"memory_bytes 64M used \+ 65M"):
            quotas.enforce(sess, project, Claim(instances=1, memory_bytes=65 * M))


def test_concurrent_claims_never_exceed_the_quota(db: tuple[Database, str]) -> None:
    """Eight threads race to add instances to a project limited to three: the lock taken by
    `enforce` makes check-then-insert atomic per project."""
    database, project = db
    with database.session() as sess:
        quotas.update(sess, project, {"instances": 3})
    outcomes: list[str] = []

    def claim() -> None:
        try:
            with database.session() as sess:
                quotas.enforce(sess, project, Claim(instances=1, memory_bytes=M))
                sess.add(_instance(project, M))
            outcomes.append("placed")
        except QuotaExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["placed"] * 3 + ["refused"] * 5
    with database.session() as sess:
        assert quotas.usage(sess, project).instances == 3
