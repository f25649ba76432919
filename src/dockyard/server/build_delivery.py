"""Delivery: after a successful build, each STACK/SERVICE of the repository's `--deploy` is
redeployed with the new image through the stack deploy path (`server/stacks.deploy`: a new
version of the stack whose only change is that service's image; how its replicas are
replaced is the stacks code's business). Each target's result is one line, recorded on the
build (`rollout`) and in its log; a failed target does not stop the others.
"""

from __future__ import annotations

from collections.abc import Callable

from dockyard.errors import DockyardError, NotFound
from dockyard.server import stacks
from dockyard.server.context import ServerContext


def redeploy(ctx: ServerContext, project_id: str, target: str, image: str) -> str:
    """One STACK/SERVICE on `image`; what was done."""
    stack, _, service = target.partition("/")
    spec = stacks.show(ctx, project_id, stack).spec
    if service not in spec.services:
        raise NotFound(f"stack {stack} has no service {service}")
    services = dict(spec.services)
    services[service] = services[service].model_copy(update={"image": image})
    result = stacks.deploy(ctx, project_id, spec.model_copy(update={"services": services}))
    return f"version {result.version}: " + ("; ".join(result.actions) or "unchanged")


def deliver(ctx: ServerContext, project_id: str, targets: list[str], image: str,
            log: Callable[[str], None]) -> str:
    """Every target on `image`; the lines of what happened, one per target."""
    lines = []
    for target in targets:
        log(f"deploying {image} to {target}")
        try:
            line = f"{target}: {redeploy(ctx, project_id, target, image)}"
        except DockyardError as exc:
            line = f"{target}: failed: {exc.message}"
        log(line)
        lines.append(line)
    return "\n".join(lines)
