"""A Dockerfile's base images, read before a build so each is pulled from the cluster
registry first (the build itself never pulls: no internet) and a missing one is named.

    FROM [--platform=…] IMAGE [AS name]   IMAGE may use ARGs declared before the first FROM
    a later FROM naming an earlier stage, and `scratch`, are not images to pull
"""

from __future__ import annotations

import re

_ARG = re.compile(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?\s*$", re.IGNORECASE)
_FROM = re.compile(r"^FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _lines(text: str) -> list[str]:
    """Instructions with continuation lines joined, comments and blank lines dropped."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((pending + line).strip())
        pending = ""
    if pending.strip():
        out.append(pending.strip())
    return out


def _expand(value: str, args: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2)
        return args.get(name) or (default if default is not None else "")
    return _VAR.sub(sub, value)


def base_images(text: str) -> list[str]:
    """The images the Dockerfile's stages start from, in order, without duplicates."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    seen_from = False
    for line in _lines(text):
        arg = _ARG.match(line)
        if arg and not seen_from:
            args[arg.group(1)] = arg.group(2) or ""
            continue
        match = _FROM.match(line)
        if not match:
            continue
        seen_from = True
        image = _expand(match.group(1), args)
        if image.lower() != "scratch" and image.lower() not in stages and image not in images:
            images.append(image)
        if match.group(2):
            stages.add(match.group(2).lower())
    return images


def base_problem(image: str, registry: str, denied: list[str]) -> str | None:
    """Why `image` may not be a build's base (None: it may): it must name the cluster
    registry, and none of the `denied` repositories (another project's)."""
    if not image.startswith(f"{registry}/"):
        return (f"base image {image} is not in Dockyard's registry: builds have no internet; "
                f"push it (dockyard image push) and write FROM {registry}/NAME:TAG")
    if any(image.startswith(prefix) for prefix in denied):
        return f"base image {image} belongs to another project"
    return None
