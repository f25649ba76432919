"""Field checks shared by the specs: names, hostnames, volume strings, env, capabilities.

Host paths are checked lexically here (absolute, no `..`, never `/`, `/proc`, `/sys`, `/dev`);
the agent checks them again on the host after resolving symlinks (agent/hostpaths.py).
"""

from __future__ import annotations

import posixpath
import re

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VOLUME_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_DOMAIN = (r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
           r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?)")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# Docker's reference grammar (distribution/reference): [DOMAIN/]PATH[:TAG][@DIGEST]
IMAGE_REF_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
                          r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
                          r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
                          r":[0-9a-fA-F]{32,})?$")
MAX_PATH = 4096
MAX_ENV_VALUE = 32768
FORBIDDEN_HOST_TREES = ("/proc", "/sys", "/dev")

# The kernel's capability names (capability.h, CAP_ prefix dropped), as docker's --cap-add.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
CAP_ALL = "ALL"


def check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            "must be 1-63 characters of lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def check_hostname(value: str) -> str:
    if not HOSTNAME_RE.match(value):
        raise ValueError("must be a DNS label: 1-63 letters, digits and '-', not starting or "
                         "ending with '-'")
    return value


def check_env_key(key: str) -> str:
    if not ENV_KEY_RE.match(key):
        raise ValueError(f"environment name {key!r} must match [A-Za-z_][A-Za-z0-9_]*")
    return key


def check_env_value(key: str, value: str) -> str:
    if "\x00" in value or "\n" in value or "\r" in value:
        raise ValueError(f"environment value of {key!r} must be one line without NUL bytes")
    if len(value) > MAX_ENV_VALUE:
        raise ValueError(f"environment value of {key!r} is longer than {MAX_ENV_VALUE}")
    return value


def check_container_path(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"volume target {path!r} must be an absolute path")
    if ".." in path.split("/"):
        raise ValueError(f"volume target {path!r} must not contain '..'")
    if posixpath.normpath(path) == "/":
        raise ValueError("volume target must not be '/'")
    return posixpath.normpath(path)


def check_host_path(path: str) -> str:
    if ".." in path.split("/"):
        raise ValueError(f"host path {path!r} must not contain '..'")
    if "\x00" in path or len(path) > MAX_PATH or not path.startswith("/"):
        raise ValueError("a host path must be absolute, without NUL bytes, at most "
                         f"{MAX_PATH} characters")
    path = posixpath.normpath(path)
    if forbidden_host_path(path):
        raise ValueError(f"host path {path!r} is not allowed (never /, /proc, /sys, /dev)")
    return path


def forbidden_host_path(path: str) -> bool:
    """True for `/` and anything in /proc, /sys or /dev (a normalized absolute path)."""
    return path in ("/", "//") or any(path == tree or path.startswith(tree + "/")
                                      for tree in FORBIDDEN_HOST_TREES)


def check_image_ref(value: str) -> str:
    first = value.split("/", 1)[0]
    named_domain = "/" in value and ("." in first or ":" in first or first == "localhost")
    if len(value) > 255 or not IMAGE_REF_RE.match(value) or (
            "/" in value and not named_domain and first != first.lower()):
        raise ValueError(f"{value[:80]!r} is not an image reference "
                         "([REGISTRY/]NAME[:TAG][@DIGEST], lower-case name)")
    return value


def check_capability(name: str) -> str:
    """`net_admin`, `CAP_NET_ADMIN` → `NET_ADMIN`; `ALL` stays; anything else is refused."""
    cap = name.strip().upper().removeprefix("CAP_")
    if cap != CAP_ALL and cap not in CAPABILITIES:
        raise ValueError(f"{name[:64]!r} is not a Linux capability (e.g. NET_ADMIN, SYS_TIME, "
                         "or ALL)")
    return cap
