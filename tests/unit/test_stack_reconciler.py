"""The stack reconciler's and deploy's decisions on a real SQLite store, with a small fake of
the instance service at its seam (`server/instances.py` create / delete / validate: rows
written as the real one would, no placement, no agent). What is checked: replicas created
in slot order and bound to their rows, scale down from the highest slot, a changed template
replaced in place, crash leftovers adopted or dropped, an instance deleted behind the stack's
back replaced, and a deploy failing half-way leaving nothing; the pure mapping of
`stacks/replicas.py` (what is refused for now, template hash, instance spec)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dockyard.compose.loader import ComposeError, ComposeFile, load_stack
from dockyard.config import ServerSettings
from dockyard.errors import Conflict
from dockyard.model.ids import new_id
from dockyard.model.instance import InstanceCreate
from dockyard.model.stack import StackSpec
from dockyard.server import stacks, stacks_reconciler
from dockyard.server.agent_proxy import AgentProxy
from dockyard.server.bootstrap import init_store
from dockyard.server.context import ServerContext
from dockyard.server.notifier import Notifier
from dockyard.server.registry import client as registry_client
from dockyard.stacks.replicas import instance_spec, not_yet, template_hash
from dockyard.store import instances as instance_rows
from dockyard.store import stacks as store
from dockyard.store.db import Database
from dockyard.store.stack_tables import StackReplicaRow
from dockyard.store.tables import InstanceRow, NetworkRow


def spec_of(text: str, name: str = "shop") -> StackSpec:
    return load_stack([ComposeFile("compose.yaml", text)], name=name).spec


BASE = """
services:
  web:
    image: img:1
    deploy: {replicas: 2}
  db:
    image: db:1
"""


class FakeInstances:
    """The instance service's three calls, as rows; `fail_on` names make create raise."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.calls: list[str] = []
        self.fail_on: set[str] = set()
        self.keep_deleting = False  # True: a deleted row stays (its agent has not run yet)
        self.state = "running"  # of a created instance (as its agent reports it)
        # its dockerd health as its agent reports it (test_stack_rollout sets it)
        self.on_create: Callable[[InstanceCreate], str] = lambda spec: "none"

    def validate(self, ctx: ServerContext, project: str, spec: InstanceCreate,
                 name_freeing_ok: bool = False) -> None:
        """The real one's name check (store.instances.name_taken), nothing else."""
        self.calls.append(f"validate {spec.name}")
        with ctx.db.read() as sess:
            if instance_rows.name_taken(sess, project, spec.name, freeing=not name_freeing_ok):
                raise Conflict(f"an instance named {spec.name!r} already exists")

    def create(self, ctx: ServerContext, project: str, spec: InstanceCreate,
               admin: bool = False) -> tuple[str, str]:
        if spec.name in self.fail_on:
            raise Conflict(f"an instance named {spec.name!r} already exists")
        self.calls.append(f"create {spec.name} {spec.image}")
        iid = new_id()
        with ctx.db.session() as sess:
            net = sess.scalar(select(NetworkRow.id))
            sess.add(InstanceRow(id=iid, name=spec.name, project_id=project, network_id=net,
                                 image=spec.image, hostname=spec.name, ip="10.0.0.9",
                                 mac="02:00:00:00:00:09", state=self.state,
                                 health=self.on_create(spec),
                                 desired_state="running"))
        return iid, f"op-{iid}"

    def delete(self, ctx: ServerContext, project: str, ref: str, force: bool) -> str:
        with ctx.db.session() as sess:
            row = sess.get(InstanceRow, ref)
            assert row is not None and force
            self.calls.append(f"delete {row.name}")
            if self.keep_deleting:
                row.desired_state = "deleted"
            else:
                sess.delete(row)
        return "op"

    def gone(self) -> None:
        """The agents finished every delete."""
        with self.ctx.db.session() as sess:
            for row in sess.scalars(select(InstanceRow).where(
                    InstanceRow.desired_state == "deleted")):
                sess.delete(row)


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServerContext]:
    settings = ServerSettings(home=tmp_path)
    db = Database(settings.db_url())
    project = init_store(db)
    with db.session() as sess:
        sess.add(NetworkRow(id="n1", name="default", project_id=project,
                            subnet="10.0.0.0/24", gateway="10.0.0.1", bridge="dybn1"))
    yield ServerContext(settings=settings, db=db, notifier=Notifier(None),
                        agents=AgentProxy(ca=None), registry=registry_client(settings))
    db.close()


@pytest.fixture
def fake(ctx: ServerContext, monkeypatch: pytest.MonkeyPatch) -> FakeInstances:
    fake = FakeInstances(ctx)
    monkeypatch.setattr(stacks_reconciler, "instances", fake)
    monkeypatch.setattr(stacks, "instances", fake)
    monkeypatch.setattr(stacks_reconciler, "NAME_POLL", 0.001)
    return fake


def project(ctx: ServerContext) -> str:
    with ctx.db.read() as sess:
        return str(sess.scalar(select(NetworkRow.project_id)))


def names(ctx: ServerContext) -> list[str]:
    with ctx.db.read() as sess:
        return sorted(sess.scalars(select(InstanceRow.name)))


def replica_rows(ctx: ServerContext) -> list[tuple[str, int, int, bool]]:
    with ctx.db.read() as sess:
        return sorted((r.service, r.slot, r.generation, r.instance_id is not None)
                      for r in sess.scalars(select(StackReplicaRow)))


def test_first_deploy_creates_in_start_order_and_binds(ctx: ServerContext,
                                                       fake: FakeInstances) -> None:
    result = stacks.deploy(ctx, project(ctx), spec_of(BASE))
    assert [c for c in fake.calls if c.startswith("create")] == [
        "create shop-db-1 db:1", "create shop-web-1 img:1", "create shop-web-2 img:1"]
    assert result.changed and result.version == 1 and len(result.operations) == 3
    assert replica_rows(ctx) == [("db", 1, 1, True), ("web", 1, 1, True), ("web", 2, 1, True)]
    assert [(r.name, r.state) for r in result.replicas] == [
        ("shop-db-1", "running"), ("shop-web-1", "running"), ("shop-web-2", "running")]


def test_same_spec_again_changes_nothing(ctx: ServerContext, fake: FakeInstances) -> None:
    stacks.deploy(ctx, project(ctx), spec_of(BASE))
    fake.calls.clear()
    again = stacks.deploy(ctx, project(ctx), spec_of(BASE))
    assert (again.changed, again.actions, again.version) == (False, [], 1)
    assert [c for c in fake.calls if not c.startswith("validate")] == []


def test_scale_up_and_down(ctx: ServerContext, fake: FakeInstances) -> None:
    stacks.deploy(ctx, project(ctx), spec_of(BASE))
    up = stacks.scale(ctx, project(ctx), "shop", {"web": 4})
    assert up.actions == ["created shop-web-3", "created shop-web-4"] and up.version == 2
    down = stacks.scale(ctx, project(ctx), "shop", {"web": 1, "db": 0})
    assert down.actions == ["deleted shop-db-1", "deleted shop-web-4", "deleted shop-web-3",
                            "deleted shop-web-2"]
    assert names(ctx) == ["shop-web-1"] and down.version == 3


def _agent_deletes_every_third_poll(fake: FakeInstances,
                                    monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names the reconciler polls while waiting for one to be free; "the agent" finishes
    the deletes at every third poll."""
    polls: list[str] = []
    original = store.name_holder

    def name_holder(sess: Any, project_id: str, name: str) -> str | None:
        polls.append(name)
        if len(polls) % 3 == 0:
            fake.gone()
        return original(sess, project_id, name)

    monkeypatch.setattr(store, "name_holder", name_holder)
    return polls


def test_changed_template_replaces_in_place_and_waits_for_the_name(
        ctx: ServerContext, fake: FakeInstances, monkeypatch: pytest.MonkeyPatch) -> None:
    stacks.deploy(ctx, project(ctx), spec_of(BASE))
    fake.calls.clear()
    fake.keep_deleting = True  # the old instance holds its name until "the agent" ran
    polls = _agent_deletes_every_third_poll(fake, monkeypatch)
    result = stacks.deploy(ctx, project(ctx), spec_of(BASE.replace("img:1", "img:2")))
    assert [c for c in fake.calls if not c.startswith("validate")] == [
        "delete shop-web-1", "create shop-web-1 img:2",
        "delete shop-web-2", "create shop-web-2 img:2"]
    assert polls.count("shop-web-1") >= 3  # it waited until the old one was gone
    assert [(s.name, s.version) for s in result.services] == [("db", 1), ("web", 2)]
    assert replica_rows(ctx) == [("db", 1, 1, True), ("web", 1, 2, True), ("web", 2, 2, True)]


def test_scale_up_into_a_slot_whose_last_replica_is_still_being_deleted(
        ctx: ServerContext, fake: FakeInstances, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scaled down and up again before the agent removed shop-web-2: the deploy's precheck
    lets the name being freed pass and the create waits for it (the e2e flake of session 12:
    `stack scale` answered 409 "an instance named 'shop-web-2' already exists")."""
    pid = project(ctx)
    stacks.deploy(ctx, pid, spec_of(BASE))
    fake.keep_deleting = True
    stacks.scale(ctx, pid, "shop", {"web": 1})  # shop-web-2: deleted, its row still there
    polls = _agent_deletes_every_third_poll(fake, monkeypatch)
    up = stacks.scale(ctx, pid, "shop", {"web": 2})
    assert up.actions == ["created shop-web-2"]
    assert polls.count("shop-web-2") >= 3  # it waited until the old one was gone
    with ctx.db.read() as sess:  # a live holder is still refused before anything is written
        assert instance_rows.name_taken(sess, pid, "shop-web-2", freeing=False)


def test_leftovers_of_a_crash_are_adopted_or_dropped(ctx: ServerContext,
                                                    fake: FakeInstances) -> None:
    """Rows reserved without an instance: web-1's instance was made (adopted), web-2's not
    (dropped, then made); db-1's instance was deleted behind the stack's back (made again)."""
    pid = project(ctx)
    stacks.deploy(ctx, pid, spec_of(BASE))
    with ctx.db.session() as sess:
        for row in sess.scalars(select(StackReplicaRow).where(
                StackReplicaRow.service == "web")):
            row.instance_id = None
        web2 = sess.scalar(select(InstanceRow).where(InstanceRow.name == "shop-web-2"))
        db1 = sess.scalar(select(InstanceRow).where(InstanceRow.name == "shop-db-1"))
        sess.delete(web2)
        sess.delete(db1)
    fake.calls.clear()
    with ctx.db.read() as sess:
        state = store.get(sess, pid, "shop")
    rec = stacks_reconciler.StackReconciler(ctx, pid, state.id, spec_of(BASE), state.services)
    rec.run([])
    assert fake.calls == ["create shop-db-1 db:1", "create shop-web-2 img:1"]
    assert replica_rows(ctx) == [("db", 1, 1, True), ("web", 1, 1, True), ("web", 2, 1, True)]


def test_half_way_failure_removes_what_it_made(ctx: ServerContext,
                                               fake: FakeInstances) -> None:
    fake.fail_on = {"shop-web-2"}
    with pytest.raises(Conflict):
        stacks.deploy(ctx, project(ctx), spec_of(BASE))
    assert [c for c in fake.calls if not c.startswith("validate")] == [
        "create shop-db-1 db:1", "create shop-web-1 img:1",
        "delete shop-db-1", "delete shop-web-1"]
    assert names(ctx) == [] and replica_rows(ctx) == []
    with ctx.db.read() as sess:
        assert store.find(sess, project(ctx), "shop") is None


def test_failed_update_goes_back_to_the_previous_version(ctx: ServerContext,
                                                         fake: FakeInstances) -> None:
    pid = project(ctx)
    stacks.deploy(ctx, pid, spec_of(BASE))
    fake.fail_on = {"shop-web-3"}
    with pytest.raises(Conflict):
        stacks.scale(ctx, pid, "shop", {"web": 3})
    assert names(ctx) == ["shop-db-1", "shop-web-1", "shop-web-2"]
    view = stacks.show(ctx, pid, "shop")
    assert view.version == 1 and [(s.name, s.replicas) for s in view.services] == [
        ("db", 1), ("web", 2)]


def test_removed_service_is_deleted(ctx: ServerContext, fake: FakeInstances) -> None:
    stacks.deploy(ctx, project(ctx), spec_of(BASE))
    only_web = "services:\n  web:\n    image: img:1\n    deploy: {replicas: 2}\n"
    result = stacks.deploy(ctx, project(ctx), spec_of(only_web))
    assert result.actions == ["deleted shop-db-1"] and names(ctx) == ["shop-web-1",
                                                                      "shop-web-2"]


def test_not_yet_refuses_with_paths(ctx: ServerContext, fake: FakeInstances) -> None:
    text = """
services:
  web:
    image: img:1
    command: [sleep, "1"]
    networks: [front]
    deploy: {resources: {reservations: {memory: 16M}}}
networks:
  front: {}
"""
    spec = spec_of(text)
    assert not_yet(spec) == [
        "services.web.deploy.resources.reservations: not supported yet by `stack deploy` "
        "(issue #12)",
        "networks.front: networks created for a stack are not supported yet by `stack "
        "deploy` (issue #12); declare it `external: true` to use an existing Dockyard "
        "network"]
    with pytest.raises(ComposeError):
        stacks.deploy(ctx, project(ctx), spec)
    assert fake.calls == []


def test_a_host_published_by_another_stack_is_a_conflict(ctx: ServerContext,
                                                        fake: FakeInstances) -> None:
    web = ("services:\n  web:\n    image: img:1\n"
           "    x-dockyard: {http: {host: app.example, port: 8080}}\n")
    stacks.deploy(ctx, project(ctx), spec_of(web, "shop"))
    calls = list(fake.calls)
    with pytest.raises(Conflict, match=r"^services\.web\.x-dockyard\.http\.host: app\.example "
                       r"is already published by stack shop \(service web\)$") as clash:
        stacks.deploy(ctx, project(ctx), spec_of(web.replace("app.", "APP."), "blog"))
    assert clash.value.status == 409
    made = [c for c in fake.calls[len(calls):] if not c.startswith("validate")]
    assert made == [] and names(ctx) == ["shop-web-1"]  # nothing created
    with ctx.db.read() as sess:
        assert store.find(sess, project(ctx), "blog") is None  # nor stored
    # the stack's own Host is no clash: a new version of it deploys
    again = stacks.deploy(ctx, project(ctx), spec_of(web.replace("img:1", "img:2"), "shop"))
    assert again.version == 2


def test_replica_mapping() -> None:
    text = """
services:
  web:
    image: img:1
    environment: {A: "1"}
    entrypoint: /bin/sh -c
    command: ["httpd -f -p 8080"]
    networks: {lan: {ipv4_address: 10.9.0.5}}
    volumes: [data:/srv]
    deploy:
      replicas: 1
      resources: {limits: {memory: 32M, cpus: "0.5"}}
      placement: {constraints: [node.labels.zone==a]}
networks:
  lan: {external: true}
volumes:
  data: {}
"""
    spec = spec_of(text)
    inst = instance_spec(spec, "web", 1)
    assert (inst.name, inst.image, inst.network, inst.ip, inst.env) == (
        "shop-web-1", "img:1", "lan", "10.9.0.5", {"A": "1"})
    assert inst.limits.memory == 32 * 1024 * 1024 and inst.limits.cpus == 0.5
    assert [(v.source, v.target) for v in inst.volumes] == [("shop-data", "/srv")]
    assert inst.constraints == {"zone": "a"}
    assert (inst.entrypoint, inst.command) == (["/bin/sh", "-c"], ["httpd -f -p 8080"])
    assert instance_spec(spec_of(BASE), "web", 1).command is None
    web = spec.services["web"]
    assert template_hash(web) == template_hash(web.model_copy(update={"replicas": 7}))
    assert template_hash(web) != template_hash(web.model_copy(update={"image": "img:2"}))
    assert instance_spec(spec_of(BASE), "web", 2).network == "default"
    # a service's replicas spread over hosts (a soft group: scheduler GroupSpreadWeigher)
    assert instance_spec(spec_of(BASE), "web", 2).spread_group == "shop-web"
    # x-dockyard.spread: false opts out; the default leaves the template hash as it was
    alone = spec_of(BASE.replace("  web:\n", "  web:\n    x-dockyard: {spread: false}\n", 1))
    assert alone.services["web"].spread is False
    assert instance_spec(alone, "web", 2).spread_group is None
    with pytest.raises(ComposeError, match=r"services\.web\.x-dockyard\.spread: must be true"):
        spec_of(BASE.replace("  web:\n", "  web:\n    x-dockyard: {spread: 3}\n", 1))
    assert template_hash(alone.services["web"]) != template_hash(spec_of(BASE).services["web"])


def test_a_live_instance_holding_a_replica_name_is_a_conflict(ctx: ServerContext,
                                                              fake: FakeInstances) -> None:
    """Not the stack's: refused at once (no waiting for it to go), and the deploy undone."""
    fake.create(ctx, project(ctx), InstanceCreate(name="shop-web-2", image="other:1"))
    fake.calls.clear()
    with pytest.raises(Conflict, match="not a replica of stack shop"):
        stacks.deploy(ctx, project(ctx), spec_of(BASE))
    assert names(ctx) == ["shop-web-2"] and replica_rows(ctx) == []
    assert [c for c in fake.calls if not c.startswith("validate")] == [
        "create shop-db-1 db:1", "create shop-web-1 img:1",
        "delete shop-db-1", "delete shop-web-1"]


@pytest.mark.parametrize(("body", "problem"), [
    ({"name": "Bad_Name", "services": {"web": {"name": "web", "image": "img:1"}}}, "name: "),
    ({"name": "shop", "services": {"web": {"name": "db", "image": "img:1"}}},
     "services.web.name: must be the service's key 'web'"),
    ({"name": "shop", "services": {"Web_1": {"name": "Web_1", "image": "img:1",
                                             "replicas": 0}}},
     "services.Web_1: its replicas would be named 'shop-Web_1-1'"),
    ({"name": "shop", "services": {}}, "services: a stack needs at least one service"),
])
def test_the_server_checks_what_it_is_sent(ctx: ServerContext, fake: FakeInstances,
                                           body: dict[str, Any], problem: str) -> None:
    """The API takes the model the CLI built, but anyone may post: refused before anything
    is written, even for a service with no replicas."""
    with pytest.raises(ComposeError) as refused:
        stacks.deploy(ctx, project(ctx), StackSpec.model_validate(body))
    assert any(p.startswith(problem) for p in refused.value.problems), refused.value.problems
    assert fake.calls == []
    with ctx.db.read() as sess:
        assert store.page(sess, project(ctx), "", 10) == []
