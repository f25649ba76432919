"""What confines an instance on this host: capabilities, security options, host paths.

    DesiredInstance ─▶ confinement(d, policy) ─▶ cap_add / cap_drop / security_opt
                    ─▶ resolve_host_path(source, root) for each host-path volume

Invariants:
* no capability beyond Docker's defaults unless an admin listed it (`cap_add`); `ALL` means
  every capability *this host* has: the ones its bounding set lacks are dropped again
  (a machine without CAP_SYS_RESOURCE cannot start `--cap-add ALL` otherwise);
* `no-new-privileges` for every member's instance; Docker's default seccomp and AppArmor
  profiles always (nothing here ever writes `seccomp=unconfined` or `apparmor=unconfined`);
* a host path is mounted by its resolved name, and only when that name stays inside the
  allowed root and is not /, /proc, /sys or /dev (a symlink inside the root pointing out
  of it is refused). The server checked the spelling; this checks the host's file system.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

from dockyard.errors import InvalidRequest
from dockyard.model.agent import DesiredInstance
from dockyard.model.validators import CAP_ALL, CAPABILITIES, forbidden_host_path

NO_NEW_PRIVILEGES = "no-new-privileges"


@dataclass(frozen=True)
class HostPolicy:
    """Host settings the agent confines instances with."""

    host_path_root: str = ""  # "" refuses every host-path volume
    capabilities: frozenset[str] = field(default_factory=lambda: frozenset(CAPABILITIES))


@dataclass(frozen=True)
class Confinement:
    cap_add: list[str]
    cap_drop: list[str]
    security_opt: list[str]


def confinement(d: DesiredInstance, policy: HostPolicy) -> Confinement:
    security_opt = [NO_NEW_PRIVILEGES] if d.no_new_privileges else []
    if CAP_ALL in d.cap_add:
        missing = sorted(set(CAPABILITIES) - policy.capabilities)
        return Confinement([CAP_ALL], missing, security_opt)
    lacking = [cap for cap in d.cap_add if cap not in policy.capabilities]
    if lacking:
        raise InvalidRequest(f"this host lacks the capabilities {', '.join(lacking)}")
    return Confinement(list(d.cap_add), [], security_opt)


def resolve_host_path(path: str, root: str) -> str:
    """`path` with every symlink resolved; InvalidRequest unless it stays inside `root`."""
    if not root:
        raise InvalidRequest("this host allows no host-path volumes (no root configured)")
    real_root = os.path.realpath(root)
    if forbidden_host_path(posixpath.normpath(real_root)):
        raise InvalidRequest(f"the allowed root {root} resolves to {real_root}, which is "
                             "never allowed")
    if not posixpath.isabs(path) or "\x00" in path or ".." in path.split("/"):
        raise InvalidRequest(f"host path {path!r} must be absolute, without '..'")
    real = os.path.realpath(path)
    if forbidden_host_path(real) or not (real == real_root
                                         or real.startswith(real_root.rstrip("/") + "/")):
        raise InvalidRequest(f"host path {path} resolves to {real}, outside the allowed root "
                             f"{root}")
    if not os.path.exists(real):
        raise InvalidRequest(f"host path {path} does not exist on this host")
    return real
