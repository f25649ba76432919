"""Image garbage collection on a host: unused images beyond a disk budget go, oldest first.

    engine images ─▶ minus those any container uses (running or not, set-aside copies too)
        ─▶ total size > budget? ─▶ remove unused, oldest first, until under the budget

`select_victims` is pure (unit-tested); `collect` applies it. Images a container uses are
never removed, so the budget may stay exceeded: it bounds what GC may free, not the disk.
"""

from __future__ import annotations

import logging

from dockyard.adapters.docker_engine import DockerEngine, ImageRecord
from dockyard.errors import DockyardError

log = logging.getLogger(__name__)


def select_victims(images: list[ImageRecord], used: set[str], budget: int) -> list[ImageRecord]:
    """The unused images to remove, oldest first, until the total is within `budget`."""
    total = sum(i.size for i in images)
    victims: list[ImageRecord] = []
    for image in sorted(images, key=lambda i: (i.created, i.id)):
        if total <= budget:
            break
        if image.id in used:
            continue
        victims.append(image)
        total -= image.size
    return victims


def collect(engine: DockerEngine, budget: int) -> list[ImageRecord]:
    """One GC pass; returns what was removed (an image that refuses to go is skipped)."""
    removed = []
    for image in select_victims(engine.image_records(), engine.images_in_use(), budget):
        try:
            for tag in image.tags or [image.id]:
                engine.remove_image(tag)
        except DockyardError as exc:
            log.info("image gc: %s stays: %s", image.tags or image.id, exc.message)
            continue
        removed.append(image)
        log.info("image gc: removed %s (%d bytes)", image.tags or image.id, image.size)
    return removed
