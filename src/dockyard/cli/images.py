"""`image build|list|push`: the cluster registry's images, and this host's engine.

`build` and `list --local` talk to the local engine directly (they import the adapters inside,
so no other command loads the docker SDK); `list` and `push` go through the server (`push`
asks the agent of the host with the image to push it into the registry).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dockyard.cli.config import client
from dockyard.cli.output import console, print_json, print_list, table
from dockyard.config import DEFAULT_IMAGE_CACHE, MACHINE_TAG
from dockyard.errors import BackendError, InvalidRequest
from dockyard.model.units import format_size

if TYPE_CHECKING:
    from dockyard.model.image import PushProgress

image_app = typer.Typer(help="Images: the cluster's registry, and this host's engine.",
                        no_args_is_help=True)

# Images `image build` knows, by name: what each builds by default.
BUILDABLE = {"machine": MACHINE_TAG}


@image_app.command("build")
def image_build(
    name: Annotated[str, typer.Argument(help="what to build: machine")],
    tag: Annotated[str | None, typer.Option(help="image tag (default: dockyard/machine:bookworm)")
                   ] = None,
    force: Annotated[bool, typer.Option("--force", help="rebuild even if the tag exists")
                     ] = False,
    cache_dir: Annotated[Path, typer.Option(help="where the downloaded base tree is kept")
                         ] = DEFAULT_IMAGE_CACHE,
) -> None:
    """Build an image on this host: `machine` is Debian bookworm with supervisord as PID 1 and
    sshd (keys only); programs are added by supervisor .conf files in /etc/dockyard/supervisor.d.
    """
    if name not in BUILDABLE:
        raise InvalidRequest(f"unknown image {name!r}: `image build` knows "
                             f"{', '.join(sorted(BUILDABLE))}")
    from dockyard.adapters.docker_engine import DockerEngine  # the engine: `build` only
    from dockyard.adapters.machine_image import build_machine_image, list_images
    tag = tag or BUILDABLE[name]
    started = time.monotonic()
    engine = DockerEngine(timeout=300)  # dockerd answers an import only once it is unpacked
    try:
        with console.status(f"building {tag}") as status:
            def progress(line: str) -> None:
                status.update(f"building {tag}: [dim]{line[:100]}[/dim]")
            image_id = build_machine_image(engine, cache_dir, progress, tag=tag, force=force)
        size = next((i.size for i in list_images(engine) if i.id == image_id), 0)
    finally:
        engine.close()
    console.print(f"{tag} {image_id[7:19]} {format_size(size)} "
                  f"({time.monotonic() - started:.0f} s)", highlight=False)


@image_app.command("list")
def image_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    local: Annotated[bool, typer.Option("--local", help="this host's engine instead of the "
                                        "registry")] = False,
) -> None:
    """List the registry's images your project may use (its own PROJECT/… and the shared
    ones), or with --local the images on this host's dockerd."""
    if local:
        _list_local(as_json)
        return
    print_list("/v1/images", as_json, [
        ("NAME", lambda r: r["name"]), ("TAG", lambda r: r["tag"]),
        ("SIZE", lambda r: format_size(r["size"])),
        ("HOSTS", lambda r: ", ".join(r["hosts"]) or None), ("REF", lambda r: r["ref"])],
        "no images in the registry (dockyard image push LOCALNAME)")


def _progress_lines(chunks: Iterator[bytes]) -> Iterator[PushProgress]:
    from dockyard.model.image import PushProgress
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield PushProgress.model_validate(json.loads(line))


def _push_status(layers: dict[str, tuple[int, int]]) -> str:
    current = sum(c for c, _ in layers.values())
    total = sum(t for _, t in layers.values())
    if not total:
        return ""
    return f"{current * 100 // total}% ({format_size(current)} of {format_size(total)})"


@image_app.command("push")
def image_push(
    source: Annotated[str, typer.Argument(help="local image NAME[:TAG] (default tag latest)")],
    host: Annotated[str | None, typer.Option(help="the host whose engine has it (default: "
                                             "the only host, or `local`)")] = None,
) -> None:
    """Push an image from a host's engine into the cluster's registry, under its own name: a
    member pushes its project's images only (PROJECT/NAME); shared ones are admins'."""
    from dockyard.model.image import PushProgress
    layers: dict[str, tuple[int, int]] = {}
    last = PushProgress()
    with client() as api, console.status(f"pushing {source}") as status:
        chunks = api.stream("/v1/images/push", method="POST",
                            body={"source": source, "host": host})
        for last in _progress_lines(chunks):
            if last.id and last.total:
                layers[last.id] = (last.current or 0, last.total)
            elif last.id and last.status in ("Pushed", "Layer already exists"):
                layers[last.id] = (layers.get(last.id, (1, 1))[1],) * 2
            status.update(f"pushing {source}: {_push_status(layers) or last.status}")
    if last.error or not last.ref:
        raise BackendError(f"push of {source} failed: {last.error or 'no answer'}")
    console.print(f"pushed {source} as {last.ref}", highlight=False)


@image_app.command("import")
def image_import(
    archive: Annotated[Path, typer.Argument(help="a `docker save` tar", exists=True,
                                            dir_okay=False)],
    name: Annotated[str, typer.Argument(help="NAME:TAG in the registry")],
    host: Annotated[str | None, typer.Option(help="the host whose agent loads and pushes it "
                                             "(default: the only host, or `local`)")] = None,
) -> None:
    """Import an image archive into the registry (streamed; never held in memory)."""
    params: dict[str, Any] = {"name": name, **({"host": host} if host else {})}
    with client() as api, archive.open("rb") as fh, console.status(f"importing {name}"):
        reply = api.upload("/v1/images/import", fh, **params)
    console.print(f"imported {archive.name} as {reply['ref']} (via {reply['host']})",
                  highlight=False)


@image_app.command("delete")
def image_delete(ref: Annotated[str, typer.Argument(help="NAME:TAG")]) -> None:
    """Delete an image from the registry (refused while an instance or snapshot uses it)."""
    with client() as api:
        api.delete(f"/v1/images/{ref}")
    console.print(f"deleted {ref}", highlight=False)


def _list_local(as_json: bool) -> None:
    from dockyard.adapters.docker_engine import DockerEngine
    from dockyard.adapters.machine_image import list_images
    engine = DockerEngine()
    try:
        images = list_images(engine)
    finally:
        engine.close()
    if as_json:
        print_json([i.to_dict() for i in images])
        return
    table([i.to_dict() for i in images], [
        ("TAGS", lambda r: ", ".join(r["tags"]) or None), ("ID", lambda r: r["id"][7:19]),
        ("SIZE", lambda r: format_size(r["size"])), ("CREATED", lambda r: r["created"][:19])],
        "no images")
