"""`image build|list`: images on this host's dockerd (no registry needed).

For now these talk to the local engine directly; the adapter functions they call are the ones
a server/registry route will reuse.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from dockyard.adapters.docker_engine import DockerEngine
from dockyard.adapters.machine_image import (
    DEFAULT_CACHE_DIR,
    MACHINE_TAG,
    build_machine_image,
    list_images,
)
from dockyard.cli.output import console, print_json, table
from dockyard.errors import InvalidRequest
from dockyard.model.units import format_size

image_app = typer.Typer(help="Images on this host (built locally, no registry).",
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
                         ] = DEFAULT_CACHE_DIR,
) -> None:
    """Build an image on this host: `machine` is Debian bookworm with supervisord as PID 1 and
    sshd (keys only); programs are added by supervisor .conf files in /etc/dockyard/supervisor.d.
    """
    if name not in BUILDABLE:
        raise InvalidRequest(f"unknown image {name!r}: `image build` knows "
                             f"{', '.join(sorted(BUILDABLE))}")
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
) -> None:
    """List the images on this host's dockerd."""
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
