"""Instance lifecycle on the server side: validate, place, reserve, record; then agents converge.

Create (DESIGN.md "Instance creation"):
    validate spec ─▶ cluster view ─▶ scheduler.place ─▶ image in the registry (the agent pulls
        it: the instance keeps its registry reference) or known on the host? (agent)
        ─▶ one transaction: project quota (project row locked), host version CAS, IP + cores
           reserved, named volumes created or bound to the host, row, operation, event,
           revision bump ─▶ 202 ─▶ the agent's watch wakes at once.
Anything wrong before the transaction is a 4xx and nothing is stored. A lost CAS retries.
`explain_placement` runs the same checks and the same scheduler, and stops before the agent.
Desired-state changes (stop/start/restart/delete) bump the revision the same way; the agent's
reports close the instance's running operations.
"""

from __future__ import annotations

import posixpath

from sqlalchemy.orm import Session

from dockyard import faults, ipam
from dockyard.errors import Conflict, Forbidden, InvalidRequest, NotFound, NoValidHost
from dockyard.model.ids import mac_for_ip, new_id
from dockyard.model.instance import (
    DesiredState,
    HostVerdict,
    Instance,
    InstanceAction,
    InstanceCreate,
    InstanceState,
    InstanceType,
    PlacementExplanation,
)
from dockyard.model.units import format_size
from dockyard.scheduler import PlacementRequest, Plan, explain, place
from dockyard.scheduler.cpusets import format_cpuset
from dockyard.server import image_access, placement
from dockyard.server.context import ServerContext
from dockyard.server.hosts import instance_view
from dockyard.server.placement import cluster_view
from dockyard.server.powers import check_host_paths
from dockyard.store import (
    events,
    hosts,
    ledger,
    meta,
    networks,
    operations,
    quotas,
    records,
    revision,
)
from dockyard.store import instances as instance_rows
from dockyard.store import volumes as volume_rows
from dockyard.store.tables import HostRow, InstanceRow, NetworkRow


def _check_volumes(spec: InstanceCreate, allowed_root: str) -> None:
    root = posixpath.normpath(allowed_root)
    for vol in spec.volumes:
        if vol.is_host_path and not (vol.source == root or vol.source.startswith(root + "/")):
            raise Forbidden(f"host path {vol.source} is outside the allowed root {root}")


def _bind_volumes(sess: Session, project_id: str, spec: InstanceCreate, host_id: str,
                  host_name: str) -> None:
    """Named volumes live where they were first used: an unknown name is created (as docker
    does), an unbound volume is bound to this host, one bound to another host is refused."""
    for vol in spec.volumes:
        if vol.is_host_path:
            continue
        # locked: serializes with a concurrent volume delete
        row = volume_rows.for_launch(sess, project_id, vol.source)
        if row is None:
            quotas.enforce(sess, project_id, quotas.Claim(volumes=1))
            volume_rows.create_bound(sess, project_id, vol.source, host_id)
        elif row.host_id is None:
            row.host_id = host_id
        elif row.host_id != host_id:
            other = hosts.get(sess, row.host_id)
            raise Conflict(f"volume {vol.source} is on host {other.name if other else '?'}; "
                           f"the instance was placed on {host_name}")


def _check_ip_shape(spec: InstanceCreate, net: NetworkRow) -> None:
    if spec.ip is not None:  # full check (and in-use) happens under the ledger
        ipam.allocate(net.subnet, net.gateway, (), spec.ip)


def _options(spec: InstanceCreate, admin: bool) -> dict[str, object]:
    """The instance's options as its row stores them (placement reads its own back)."""
    return {"lxcfs": spec.lxcfs, "ssh_keys": spec.ssh_keys,
            # the cluster view reads anti_affinity back: the host's groups
            "anti_affinity": spec.anti_affinity, "spread_group": spec.spread_group,
            "constraints": dict(spec.constraints),
            "strategy": spec.strategy, "cap_add": spec.cap_add, "no_new_privileges": not admin,
            "healthcheck": spec.healthcheck.model_dump(mode="json") if spec.healthcheck else None,
            "command": spec.command, "entrypoint": spec.entrypoint,
            "disk_bytes": spec.disk}


def _request(spec: InstanceCreate, network_id: str) -> PlacementRequest:
    return placement.request_for(spec.limits.to_limits(), network_id,
                                 _options(spec, admin=False), host=spec.host,
                                 vm=spec.type == InstanceType.vm)


def _check_vm_image(spec: InstanceCreate, host: HostRow) -> None:
    """A VM boots a VM image of its host (`HostInventory.vm_images`, with the guest's minimum
    memory); a container never gets one."""
    images: dict[str, int] = dict(host.inventory.get("vm_images") or {})
    if spec.type != InstanceType.vm:
        return
    if spec.image not in images:
        known = ", ".join(sorted(images)) or "none"
        raise InvalidRequest(f"image {spec.image!r} is not a VM image on host {host.name} "
                             f"(VM images there: {known})")
    memory, least = spec.limits.memory or 0, int(images[spec.image])
    if memory < least:
        raise InvalidRequest(f"memory {format_size(memory)} is below the minimum of image "
                             f"{spec.image} ({format_size(least)})")


def _refuse_vm_image(sess: Session, spec: InstanceCreate) -> None:
    if spec.type == InstanceType.container and any(
            spec.image in (row.inventory.get("vm_images") or {})
            for row in hosts.all_by_name(sess)):
        raise InvalidRequest(f"image {spec.image!r} is a VM image: launch it with --type vm")


def _claim(spec: InstanceCreate) -> quotas.Claim:
    return quotas.Claim(instances=1, cores=spec.limits.cores,
                        memory_bytes=spec.limits.memory)


def _checked(ctx: ServerContext, sess: Session, project_id: str,
             spec: InstanceCreate, name_freeing_ok: bool = False) -> NetworkRow:
    """The checks before placement; returns the instance's network."""
    _check_volumes(spec, ctx.settings.allowed_host_root())
    net = records.visible_network(sess, project_id, spec.network)
    _check_ip_shape(spec, net)
    if instance_rows.name_taken(sess, project_id, spec.name, freeing=not name_freeing_ok):
        raise Conflict(f"an instance named {spec.name!r} already exists")
    quotas.enforce(sess, project_id, _claim(spec))  # early answer; _commit decides
    if spec.host is not None and not hosts.exists(sess, spec.host):
        raise NotFound(f"host {spec.host!r} not found")
    return net


def validate(ctx: ServerContext, project_id: str, spec: InstanceCreate,
             name_freeing_ok: bool = False) -> tuple[Plan, str, str]:
    """Everything that can be checked before writing; returns the plan, the network id and
    the image reference the agent gets (read-only: `_commit` checks again under the lock).
    `name_freeing_ok`: a name held by an instance being deleted passes (a stack replica's:
    its reconciler waits for the name before the create, `StackReconciler._wait_name_free`)."""
    with ctx.db.read() as sess:
        net = _checked(ctx, sess, project_id, spec, name_freeing_ok)
        _refuse_vm_image(sess, spec)
        if spec.type == InstanceType.container:
            image_access.check_launch(sess, project_id, spec.image, ctx.registry.address)
        view, _ = cluster_view(sess, ctx.settings)
        plan = place(_request(spec, net.id), view)
        host = hosts.get(sess, plan.host_id)
        assert host is not None
        _check_vm_image(spec, host)
        url, secret, host_name = host.api_url, host.api_secret, host.name
    if spec.type == InstanceType.vm:
        return plan, net.id, spec.image  # a file of the host, not a registry reference
    image = ctx.registry.resolve(spec.image)
    if image is None and not ctx.agents.image_exists(host_name, url, secret, spec.image):
        raise NotFound(f"image {spec.image!r} is neither in the registry nor known on "
                             f"host {host_name} (push, build or import it first)")
    check_host_paths(ctx, spec, host_name, url, secret)
    return plan, net.id, image or spec.image


def explain_placement(ctx: ServerContext, project_id: str,
                      spec: InstanceCreate) -> PlacementExplanation:
    """Validate the spec and say where it would be placed and why; nothing is written."""
    with ctx.db.session() as sess:
        net = _checked(ctx, sess, project_id, spec)
        view, _ = cluster_view(sess, ctx.settings)
    request = _request(spec, net.id)
    chosen, message = None, None
    try:
        chosen = place(request, view).host_name
    except NoValidHost as exc:
        message = exc.message
    hosts = [HostVerdict(host=v.name, verdict="fits" if v.reason is None else "rejected",
                         reason=v.reason, score=v.score) for v in explain(request, view)]
    return PlacementExplanation(chosen=chosen, message=message, hosts=hosts)


def _commit(ctx: ServerContext, sess: Session, project_id: str, spec: InstanceCreate,
            network_id: str, image: str, admin: bool) -> tuple[str, str]:
    """Place and reserve in one transaction; returns (instance id, operation id)."""
    quotas.enforce(sess, project_id, _claim(spec))  # first: it locks the project
    instance_id = new_id()
    plan = placement.reserve(sess, ctx.settings, _request(spec, network_id), instance_id)
    net = networks.get(sess, network_id)
    assert net is not None
    ip = ipam.allocate(net.subnet, net.gateway, ledger.used_ips(sess, net.id), spec.ip)
    ledger.reserve_ip(sess, net.id, ip, instance_id, chosen=spec.ip is not None)
    _bind_volumes(sess, project_id, spec, plan.host_id, plan.host_name)
    limits = spec.limits.to_limits(cpuset=format_cpuset(plan.cores))
    rev = revision.bump(sess)
    row = InstanceRow(
        id=instance_id, name=spec.name, project_id=project_id, host_id=plan.host_id,
        network_id=net.id, image=image, hostname=spec.hostname or spec.name, ip=ip,
        mac=mac_for_ip(ip), state=InstanceState.creating, desired_state=DesiredState.running,
        generation=1, limits=limits.model_dump(),
        volumes=[v.model_dump() for v in spec.volumes], env=dict(spec.env), revision=rev,
        options=_options(spec, admin), type=spec.type.value)
    sess.add(row)
    sess.flush()
    if plan.cores:
        touch_shared(sess, plan.host_id, rev)
    meta.put(sess, meta.NETWORKS_REVISION, str(rev))  # a new peer for /etc/hosts
    op = operations.start(sess, row, "create", state="running")
    events.record(sess, row, "created", f"placed on {plan.host_name} with {ip}",
                  plan.host_name)
    return instance_id, op.id


def create(ctx: ServerContext, project_id: str, spec: InstanceCreate,
           admin: bool = False) -> tuple[str, str]:
    """`admin`: the caller is an admin (the router checked admin-only powers); a member's
    instance runs with no-new-privileges. Returns (instance id, operation id)."""
    op_id, view = create_and_view(ctx, project_id, spec, admin)
    return view.id, op_id


def create_and_view(ctx: ServerContext, project_id: str, spec: InstanceCreate,
                    admin: bool = False) -> tuple[str, Instance]:
    """The create's operation id and the new instance (`creating`), read in the create's own
    transaction: once it is committed the agent may fail the create and its `failed_create`
    report remove the row before the caller could read it again (the API would answer 404 to
    a create it had accepted; the same race as `delete_and_view`'s)."""
    _, network_id, image = validate(ctx, project_id, spec)

    def work(sess: Session) -> tuple[str, Instance]:
        instance_id, op_id = _commit(ctx, sess, project_id, spec, network_id, image, admin)
        row = instance_rows.get(sess, instance_id)
        assert row is not None
        return op_id, instance_view(sess, row, ctx.settings)

    op_id, view = placement.placing(ctx.db, work)
    faults.point("server.create.committed")
    ctx.notifier.bump(view.id)
    return op_id, view


def touch_shared(sess: Session, host_id: str, rev: int) -> None:
    """The shared pool changed: every shared-pool instance on the host must be re-pinned."""
    for row in instance_rows.on_host(sess, host_id):
        if int(row.limits.get("cores", 0)) == 0:
            row.revision = rev


def set_desired(ctx: ServerContext, project_id: str, ref: str, action: InstanceAction) -> str:
    """Stop, start or restart; returns the operation id."""
    op_id, instance_id = ctx.db.transact(lambda sess: _set_desired(sess, project_id, ref, action))
    faults.point("server.action.committed")
    ctx.notifier.bump(instance_id)
    return op_id


def delete(ctx: ServerContext, project_id: str, ref: str, force: bool) -> str:
    return delete_and_view(ctx, project_id, ref, force)[0]


def delete_and_view(ctx: ServerContext, project_id: str, ref: str,
                    force: bool) -> tuple[str, Instance]:
    """The delete's operation id and the instance as the delete left it (`deleting`), read in
    the delete's own transaction: once it is committed the agent may finish the delete and its
    report remove the row before the caller could read it again (a hollow agent, with no
    container to remove, did: the API answered 404 to a delete that had succeeded)."""
    def work(sess: Session) -> tuple[str, Instance]:
        op_id, row = _delete(sess, project_id, ref, force)
        return op_id, instance_view(sess, row, ctx.settings)

    op_id, view = ctx.db.transact(work)
    faults.point("server.delete.committed")
    ctx.notifier.bump(view.id)
    return op_id, view


def _set_desired(sess: Session, project_id: str, ref: str,
                 action: InstanceAction) -> tuple[str, str]:
    row = records.instance_by_ref(sess, project_id, ref)
    if row.desired_state == DesiredState.deleted:
        raise Conflict(f"instance {row.name} is being deleted")
    if row.state == InstanceState.creating:
        raise Conflict(f"instance {row.name} is still being created")
    row.revision = revision.bump(sess)
    if action == InstanceAction.stop:
        row.desired_state = DesiredState.stopped
        if row.state != InstanceState.stopped:
            row.state = InstanceState.stopping
        op = operations.start(sess, row, "stop", state="stopped")
    elif action == InstanceAction.start:
        row.desired_state = DesiredState.running
        if row.state != InstanceState.running:
            row.state = InstanceState.starting
        op = operations.start(sess, row, "start", state="running")
    else:
        row.desired_state = DesiredState.running
        row.restart_serial += 1
        row.state = InstanceState.starting
        op = operations.start(sess, row, "restart", state="running",
                              restart_serial=row.restart_serial)
    events.record(sess, row, action.value, f"{action.value} requested")
    return op.id, row.id


def _delete(sess: Session, project_id: str, ref: str, force: bool) -> tuple[str, InstanceRow]:
    row = records.instance_by_ref(sess, project_id, ref)
    if row.state == InstanceState.running and not force:
        raise Conflict(f"instance {row.name} is running; stop it first or use --force")
    rev = revision.bump(sess)  # the revision row first, then the instance's (one lock order)
    row.desired_state = DesiredState.deleted
    row.state = InstanceState.deleting
    row.revision = rev
    operations.fail_running(sess, row.id, "superseded by delete")
    op = operations.start(sess, row, "delete", state="deleted")
    events.record(sess, row, "delete", "delete requested")
    return op.id, row
