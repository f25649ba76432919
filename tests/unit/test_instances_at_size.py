"""The instance API with 1,000 stored instances (issue 16, "API at size", the suite's small
version; `bench/` measures 100,000): on the real app (ASGI transport, SQLite, no lifespan), the
pages of `GET /v1/instances` are complete, ordered by name, without repeats, and hold only the
caller's project; `GET /v1/instances/{id}` and `/{name}` answer every instance."""

from __future__ import annotations

import random
from pathlib import Path

from dockyard.config import ServerSettings
from dockyard.model.ids import new_id
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store, mint_admin_token
from dockyard.store import projects
from dockyard.store.tables import InstanceRow, NetworkRow
from tests.unit.asgi import AppClient

STORED = 1_000


def _rows(project: str, network: str, names: list[str]) -> list[InstanceRow]:
    return [InstanceRow(id=new_id(), name=name, project_id=project, host_id=None,
                        network_id=network, image="busybox", hostname=name,
                        ip=f"10.{200 + i // 65536}.{(i // 256) % 256}.{i % 256}",
                        mac="02:00:00:00:00:02", state="stopped", desired_state="stopped",
                        generation=1, limits={}, volumes=[], env={}, revision=1, options={})
            for i, name in enumerate(names)]


def test_a_thousand_instances_page_complete_and_ordered(tmp_path: Path) -> None:
    app = create_app(ServerSettings(home=tmp_path / "home", registry_url="http://127.0.0.1:1"))
    ctx = app.state.ctx
    project = init_store(ctx.db)
    admin = mint_admin_token(ctx.db, project)
    rng = random.Random(16)
    names = [f"{rng.choice('abcxyz')}{rng.randrange(10**6):06d}-{i}" for i in range(STORED)]
    with ctx.db.session() as sess:
        other = projects.create(sess, "other").id
        sess.add(NetworkRow(id="n1", name="n1", project_id=project, subnet="10.200.0.0/14",
                            gateway="10.200.0.1", dns=[], bridge="dyb-size"))
        sess.flush()
        sess.add_all(_rows(project, "n1", rng.sample(names, len(names))))  # stored unordered
        sess.add_all(_rows(other, "n1", [f"o{i}" for i in range(50)]))
    client = AppClient(app)
    auth = {"Authorization": f"Bearer {admin}"}

    seen: list[str] = []
    ids: list[str] = []
    after, pages = "", 0
    while True:
        body = client.get("/v1/instances", params={"limit": 137, "after": after},
                          headers=auth).json()
        pages += 1
        assert len(body["items"]) <= 137
        seen += [i["name"] for i in body["items"]]
        ids += [i["id"] for i in body["items"]]
        if body["next"] is None:
            break
        assert body["next"] == seen[-1]
        after = body["next"]
    assert seen == sorted(names)  # complete, ordered, no repeats, none of `other`
    assert pages == -(-STORED // 137)
    for iid, name in rng.sample(list(zip(ids, seen, strict=True)), 20):
        assert client.get(f"/v1/instances/{iid}", headers=auth).json()["name"] == name
        assert client.get(f"/v1/instances/{name}", headers=auth).json()["id"] == iid
    ctx.db.close()
