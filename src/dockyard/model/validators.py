"""Field checks shared by the specs: names, hostnames, volume strings, env."""

from __future__ import annotations

import posixpath
import re

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VOLUME_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


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
    if "\x00" in value:
        raise ValueError(f"environment value of {key!r} contains a NUL byte")
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
    return posixpath.normpath(path)
