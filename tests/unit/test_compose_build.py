"""Compose `build:` (issue #13): the git context forms Compose takes (URL, #branch, :dir,
dockerfile relative to the context) as a repository's source; what Dockyard refuses, by
path; the loader builds each service only once the whole file is valid, and the service runs
the image the build answers (the builder is the CLI's; here a fake that records its calls)."""

from __future__ import annotations

import pytest

from dockyard.compose.buildsrc import BuildSource, LocalSource, Source, parse_build
from dockyard.compose.loader import ComposeError, ComposeFile, load_stack

URL = "https://git.example/team/shop.git"


@pytest.mark.parametrize(("value", "source"), [
    (URL, BuildSource(URL, "main", ".", "Dockerfile")),
    (f"{URL}#release", BuildSource(URL, "release", ".", "Dockerfile")),
    (f"{URL}#main:web", BuildSource(URL, "main", "web", "web/Dockerfile")),
    ({"context": f"{URL}#:web/", "dockerfile": "docker/Dockerfile.prod"},
     BuildSource(URL, "main", "web", "web/docker/Dockerfile.prod")),
    ("git@git.example:team/shop.git#dev", BuildSource("git@git.example:team/shop.git", "dev",
                                                      ".", "Dockerfile")),
])
def test_git_contexts(value: object, source: BuildSource) -> None:
    assert parse_build("services.web.build", value) == source


@pytest.mark.parametrize(("value", "source"), [
    (".", LocalSource(".", "Dockerfile")),
    ("./web", LocalSource("./web", "Dockerfile")),
    ("../shared/web", LocalSource("../shared/web", "Dockerfile")),
    ("/srv/web", LocalSource("/srv/web", "Dockerfile")),
    ({"context": "./web", "dockerfile": "Dockerfile.prod"},
     LocalSource("./web", "Dockerfile.prod")),
    ({"context": "web", "dockerfile": "./docker//Dockerfile"},
     LocalSource("web", "docker/Dockerfile")),
    ({"dockerfile": "Dockerfile.dev"}, LocalSource(".", "Dockerfile.dev")),
])
def test_local_directory_contexts(value: object, source: LocalSource) -> None:
    assert parse_build("services.web.build", value) == source


@pytest.mark.parametrize(("value", "problem"), [
    ("file:///srv/web", "given by its path, not a file:// URL"),
    ("s3://bucket/web", "neither a git URL nor a directory"),
    ({"context": "./web", "dockerfile": "../Dockerfile"}, "inside the context directory"),
    ({"context": "./web", "dockerfile": "/abs/Dockerfile"}, "inside the context directory"),
    ({"context": URL, "args": {"A": "1"}}, "services.web.build.args: not supported yet"),
    (f"{URL}#main:../up", "must stay inside the repository"),
    ({"context": URL, "dockerfile": "../../x"}, "must stay inside the repository"),
    (f"{URL}#bad..branch", "is not a branch name"),
])
def test_refused_builds(value: object, problem: str) -> None:
    found = parse_build("services.web.build", value)
    assert isinstance(found, str) and problem in found


def _load(text: str, built: list[tuple[str, Source]]) -> dict[str, str]:
    def build(service: str, source: Source) -> str:
        built.append((service, source))
        return f"registry:5000/default/shop-{service}:abc123"
    spec = load_stack([ComposeFile("compose.yaml", text)], name="shop", build=build).spec
    return {name: svc.image for name, svc in spec.services.items()}


def test_a_service_runs_the_image_its_build_answers() -> None:
    built: list[tuple[str, Source]] = []
    images = _load(f"services:\n  web:\n    build: {URL}#main:web\n"
                   "  db:\n    image: dockyard/busybox\n", built)
    assert images == {"web": "registry:5000/default/shop-web:abc123",
                      "db": "dockyard/busybox"}
    assert built == [("web", BuildSource(URL, "main", "web", "web/Dockerfile"))]


def test_nothing_is_built_when_the_file_is_refused() -> None:
    built: list[tuple[str, Source]] = []
    with pytest.raises(ComposeError, match="cap_add"):
        _load(f"services:\n  web:\n    build: {URL}\n    cap_add: [NET_ADMIN]\n", built)
    with pytest.raises(ComposeError, match="inside the context directory"):
        _load("services:\n  web:\n    build: {context: ., dockerfile: ../D}\n"
              f"  api:\n    build: {URL}\n", built)
    assert built == []


def test_a_local_directory_service_runs_the_image_its_build_answers() -> None:
    built: list[tuple[str, Source]] = []
    images = _load("services:\n  web:\n    build: {context: ./web, dockerfile: D.prod}\n"
                   f"  api:\n    build: {URL}\n", built)
    assert images == {"web": "registry:5000/default/shop-web:abc123",
                      "api": "registry:5000/default/shop-api:abc123"}
    assert built == [("web", LocalSource("./web", "D.prod")),
                     ("api", BuildSource(URL, "main", ".", "Dockerfile"))]


def test_without_a_builder_build_is_refused() -> None:
    with pytest.raises(ComposeError, match="services.web.build: not supported yet"):
        load_stack([ComposeFile("c.yaml", f"services:\n  web:\n    build: {URL}\n")],
                   name="shop")
