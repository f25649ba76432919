"""Field checks shared by the specs: names, hostnames, volume strings, env, capabilities.

Host paths are checked lexically here (absolute, no `..`, never `/`, `/proc`, `/sys`, `/dev`);
the agent checks them again on the host after resolving symlinks
(`resolve_host_path` in agent/security.py).
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any

from pydantic import AfterValidator

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VOLUME_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_LOWER_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
# A registry part names a domain (a dot), a port or localhost; a first part in lower case
# without either is a path component (docker.io's namespace), so `Team/app` is no reference.
_DOMAIN = (rf"(?:{_LABEL}(?:\.{_LABEL})+(?::[0-9]+)?|{_LABEL}:[0-9]+"
           rf"|{_LOWER_LABEL}(?:\.{_LOWER_LABEL})*)")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
# Docker's reference grammar (distribution/reference): [DOMAIN/]PATH[:TAG][@DIGEST]
IMAGE_REF_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*{_TAG}"
                          r"(?:@(?:sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}"
                          r"|sha512:[0-9a-f]{128}))?$")  # the digests dockerd knows
# NAME[:TAG] in this registry: no registry part (no dot or port in the first part; not
# `localhost/…`, see `image.split_ref`), no digest
_NO_DOT = r"[a-z0-9]+(?:(?:_|__|-+)[a-z0-9]+)*"
LOCAL_IMAGE_RE = re.compile(rf"^(?!localhost/)(?:{_COMPONENT}|{_NO_DOT}(?:/{_COMPONENT})+)"
                            rf"{_TAG}$")
RULE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]*[A-Za-z0-9][A-Za-z0-9._-]*$")
URL_RE = re.compile(r"^https?://")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4_RE = re.compile(rf"^{_OCTET}(?:\.{_OCTET}){{3}}$")
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


def _alternatives(values: list[int]) -> str:
    return "(?:" + "|".join(str(v) for v in sorted(values, reverse=True)) + ")"


def _subnet_pattern(low: int, high: int) -> str:
    """IPv4 subnets /low../high with no host bits set, outside loopback, link-local,
    multicast and reserved space: per prefix, each octet the values it may take."""
    firsts = [o for o in range(256) if o != 127 and o < 224]
    choices = []
    for prefix in range(low, high + 1):
        octets = []
        for index in range(4):
            bits = min(max(prefix - 8 * index, 0), 8)
            octets.append([v for v in range(256) if v % (1 << (8 - bits)) == 0])
        octets[0] = firsts
        rest = r"\.".join(_alternatives(o) for o in octets[2:])
        if prefix >= 16:  # 169.254.0.0/16 and inside it: link-local
            others = [o for o in firsts if o != 169]
            choices.append(rf"{_alternatives(others)}\.{_alternatives(octets[1])}\.{rest}/{prefix}")
            choices.append(rf"169\.{_alternatives([v for v in octets[1] if v != 254])}\.{rest}"
                           f"/{prefix}")
        else:
            choices.append(rf"{_alternatives(firsts)}\.{_alternatives(octets[1])}\.{rest}"
                           f"/{prefix}")
    return "^(?:" + "|".join(choices) + ")$"


SUBNET_RE = re.compile(_subnet_pattern(8, 29))


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


# check_capability's spellings: any case, with or without CAP_
CAPABILITY_PATTERN = (f"^(?:{_any_case('CAP_')})?(?:"
                      + "|".join(_any_case(c) for c in (*CAPABILITIES, CAP_ALL)) + ")$")
SSH_KEY_PATTERN = r"^[ \t]*(?:ssh-|ecdsa-|sk-)\S*[ \t]+[^\n]*\S[^\n]*$"
ENV_SCHEMA: dict[str, Any] = {
    "propertyNames": {"pattern": ENV_KEY_RE.pattern, "maxLength": 255},
    "additionalProperties": {"type": "string", "maxLength": MAX_ENV_VALUE,
                             "pattern": "^[^\u0000\n\r]*$"}}
CONSTRAINTS_SCHEMA: dict[str, Any] = {
    "propertyNames": {"minLength": 1, "maxLength": 63, "pattern": "^[^=]*$"},
    "additionalProperties": {"type": "string", "maxLength": 255}}
# an absolute path without a `..` part, not `/` itself
# a named volume, or a host path (absolute; plain parts, so no `..`; never /proc, /sys, /dev)
VOLUME_SOURCE_SCHEMA: dict[str, Any] = {"anyOf": [
    {"pattern": VOLUME_NAME_RE.pattern, "maxLength": 63},
    {"pattern": "^(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$", "maxLength": MAX_PATH,
     "not": {"pattern": "^/(?:proc|sys|dev)(?:/|$)"}}]}
CONTAINER_PATH_SCHEMA: dict[str, Any] = {
    "pattern": "^/", "maxLength": MAX_PATH,
    "not": {"anyOf": [{"pattern": "(^|/)\\.\\.(/|$)"}, {"pattern": "^[/.]*$"}]}}


def schema_rule(regex: re.Pattern[str], min_length: int, max_length: int) -> dict[str, Any]:
    """The JSON Schema of a string field checked by `regex` (shown to OpenAPI clients: what
    it accepts the server accepts)."""
    return {"pattern": regex.pattern, "minLength": min_length, "maxLength": max_length}


NAME_SCHEMA = schema_rule(NAME_RE, 1, 63)
HOSTNAME_SCHEMA = schema_rule(HOSTNAME_RE, 1, 63)
VOLUME_NAME_SCHEMA = schema_rule(VOLUME_NAME_RE, 1, 63)
IMAGE_REF_SCHEMA = schema_rule(IMAGE_REF_RE, 1, 255)
RULE_NAME_SCHEMA = schema_rule(RULE_NAME_RE, 1, 63)
SUBNET_SCHEMA = schema_rule(SUBNET_RE, 9, 18)
LOCAL_IMAGE_SCHEMA = schema_rule(LOCAL_IMAGE_RE, 1, 255)


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
    if len(value) > 255 or not IMAGE_REF_RE.match(value):
        raise ValueError(f"{value[:80]!r} is not an image reference "
                         "([REGISTRY/]NAME[:TAG][@DIGEST], lower-case name)")
    return value


# Field types that check themselves (`name: Name`), for a field that needs only one check.
Name = Annotated[str, AfterValidator(check_name)]
ImageRef = Annotated[str, AfterValidator(check_image_ref)]


def matching(regex: re.Pattern[str], message: str) -> AfterValidator:
    """The check of a field `Annotated[str, matching(…)]` (or `str | None`: None passes): the
    value must match `regex`, else ValueError(message)."""

    def check(value: str | None) -> str | None:
        if value is not None and not regex.match(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def check_capability(name: str) -> str:
    """`net_admin`, `CAP_NET_ADMIN` → `NET_ADMIN`; `ALL` stays; anything else is refused."""
    cap = name.strip().upper().removeprefix("CAP_")
    if cap != CAP_ALL and cap not in CAPABILITIES:
        raise ValueError(f"{name[:64]!r} is not a Linux capability (e.g. NET_ADMIN, SYS_TIME, "
                         "or ALL)")
    return cap
