"""A service's compose `build:` as Dockyard builds it, through the same repositories and
builds as a push (issue #13). Pure: the caller (the CLI's `stack deploy`) builds each source
and gets the image back; the service then runs that image.

    build: https://git.example/team/shop.git#main:web      (Compose's git context:
    build: {context: URL#REF:DIR, dockerfile: Dockerfile}    URL, #branch, :subdirectory)
        ─▶ BuildSource(url, branch, context DIR, dockerfile DIR/Dockerfile)
    build: ./web                                             (a local directory, relative to
    build: {context: ./web, dockerfile: Dockerfile.prod}     the compose file's directory)
        ─▶ LocalSource(directory, dockerfile inside it): the caller uploads it as a tar
           archive (its .dockerignore honoured) and the build runs from that archive
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.model.build import BRANCH_RE, GIT_URL_RE, REL_PATH_RE

KEYS = frozenset({"context", "dockerfile"})  # the `build:` keys Dockyard takes


@dataclass(frozen=True)
class BuildSource:
    url: str
    branch: str  # "main" when the context names none
    context: str  # inside the repository ("." for its root)
    dockerfile: str  # from the repository's root


@dataclass(frozen=True)
class LocalSource:
    directory: str  # as written: relative to the compose file's directory, or absolute
    dockerfile: str  # inside the directory, normalised ("Dockerfile" by default)


Source = BuildSource | LocalSource


def parse_build(path: str, value: Any) -> Source | str:
    """The source of `build:` at `path` (services.NAME.build), or what is wrong with it."""
    body: Mapping[str, Any] = {"context": value} if isinstance(value, str) else value
    extra = sorted(set(body) - KEYS)
    if extra:
        return f"{path}.{extra[0]}: not supported yet (builds take context and dockerfile)"
    context = str(body.get("context") or ".")  # Compose's default context: "."
    dockerfile = str(body.get("dockerfile") or "Dockerfile")
    url, _, fragment = context.partition("#")
    if url.startswith("file://"):
        return f"{path}.context: a local directory is given by its path, not a file:// URL"
    if not GIT_URL_RE.match(url):
        return _local(path, context, dockerfile)
    branch, _, subdir = fragment.partition(":")
    branch = branch or "main"
    subdir = posixpath.normpath(subdir) if subdir else "."
    full = posixpath.normpath(posixpath.join(subdir, dockerfile))
    if not BRANCH_RE.match(branch):
        return f"{path}.context: {branch!r} is not a branch name"
    if not REL_PATH_RE.match(subdir) or not REL_PATH_RE.match(full):
        return f"{path}: the context and dockerfile must stay inside the repository"
    return BuildSource(url=url, branch=branch, context=subdir, dockerfile=full)


def _local(path: str, directory: str, dockerfile: str) -> LocalSource | str:
    """A local directory context: the Dockerfile must be inside it (it is uploaded alone)."""
    if "://" in directory:
        return f"{path}.context: {directory!r} is neither a git URL nor a directory"
    inside = posixpath.normpath(dockerfile)
    if not REL_PATH_RE.match(inside):
        return (f"{path}.dockerfile: must be a path inside the context directory "
                "(relative, no '..')")
    return LocalSource(directory=directory, dockerfile=inside)


def take_sources(tree: dict[str, Any]) -> tuple[dict[str, Source], list[str]]:
    """The `build:` source of each service that has one, taken out of `tree` (so that the
    rest of the file is checked before anything is built); the problems, by path."""
    problems: list[str] = []
    sources: dict[str, Source] = {}
    for name, body in (tree.get("services") or {}).items():
        if isinstance(body, dict) and "build" in body:
            found = parse_build(f"services.{name}.build", body.pop("build"))
            if isinstance(found, str):
                problems.append(found)
            else:
                sources[name] = found
                body.setdefault("image", f"build-of-{name}")  # until it is built
    return sources, problems


def build_images(tree: dict[str, Any], sources: Mapping[str, Source],
                 build: Callable[[str, Source], str]) -> None:
    """Each source built (`build(service, source)` answers the image), the service on it."""
    for name, source in sources.items():
        tree["services"][name]["image"] = build(name, source)
