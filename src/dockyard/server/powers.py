"""Admin-only power, explicit: what only an admin may ask of an instance.

    extra capabilities (`cap_add`) ─┐
    host-path volumes               ├─ a member asking → 403, nothing created
    host pinning (`host`)          ─┘
    host-path volumes ─▶ the chosen host's agent resolves each path (symlinks) and refuses
                         one that leaves the allowed root or lands in /, /proc, /sys, /dev

Members' instances always run with no-new-privileges and Docker's default seccomp and
AppArmor profiles; no option turns those off, for anyone.
"""

from __future__ import annotations

from dockyard.errors import Forbidden
from dockyard.model.instance import InstanceCreate
from dockyard.server.context import ServerContext

ADMIN = "admin"


def check_admin_powers(spec: InstanceCreate, role: str) -> None:
    if role == ADMIN:
        return
    if spec.cap_add:
        raise Forbidden("only an admin may add capabilities")
    if any(vol.is_host_path for vol in spec.volumes):
        raise Forbidden("only an admin may use host-path volumes")
    if spec.host is not None:
        raise Forbidden("only an admin may pin an instance to a host")


def check_host_paths(ctx: ServerContext, spec: InstanceCreate, host_name: str, url: str,
                     secret: str) -> None:
    """Ask the host that would run the instance whether each host path resolves inside the
    allowed root (the server cannot see the host's file system)."""
    root = ctx.settings.allowed_host_root()
    for vol in spec.volumes:
        if vol.is_host_path:
            ctx.agents.check_host_path(host_name, url, secret, vol.source, root)
