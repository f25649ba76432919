"""`dockyard stack deploy|ls|ps|show|scale|history|rollback|rm`: app stacks from compose
files (issue #12).

`deploy` loads the files here (interpolation, merge, compose-spec schema, Dockyard's
subset: `dockyard.compose`), builds each service with `build:` first (a git context, or a
local directory packed and uploaded as a tar archive: cli/builds.build_service) and sends
the resulting model; the server checks it again,
stores a version and converges the replicas, which are ordinary instances named
STACK-SERVICE-N. A changed service is rolled out by the server in the request (batches,
health-gated, rolled back or paused on failure); then the CLI shows the replicas coming up
until all run.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dockyard.cli.config import client
from dockyard.cli.output import (
    console,
    details,
    err_console,
    fetch,
    print_json,
    print_list,
    table,
)
from dockyard.errors import BackendError, InvalidRequest, NotFound

stack_app = typer.Typer(help="App stacks: compose files deployed as services of ordinary "
                        "instances (STACK-SERVICE-N).", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON")]
POLL = 0.5  # seconds between looks at the replicas while deploy waits
FAILED = {"error", "stopped"}


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from exc


def load(name: str, files: list[Path], env_files: list[Path]) -> tuple[dict[str, Any],
                                                                       tuple[str, ...]]:
    """The files → the stack model the API takes (as JSON), and the loader's warnings.
    Without --env-file, a `.env` beside the first file is read (as Compose does)."""
    from dockyard.cli.builds import build_service
    from dockyard.compose.buildsrc import BuildSource, Source
    from dockyard.compose.loader import ComposeFile, load_stack  # yaml + jsonschema: here only
    if not files:
        raise InvalidRequest("stack deploy needs at least one -f FILE")
    base = files[0].resolve().parent
    if not env_files and (base / ".env").is_file():
        env_files = [base / ".env"]

    def read_file(path: str) -> str:  # a service's env_file, relative to the first file
        return _read(base / path)

    def build(service: str, source: Source) -> str:
        if isinstance(source, BuildSource):
            return build_service(name, service, {
                "url": source.url, "branch": source.branch, "context": source.context,
                "dockerfile": source.dockerfile})
        from dockyard.adapters.build_context import pack  # docker-py's .dockerignore rules
        with pack(base / source.directory, source.dockerfile) as archive:
            return build_service(name, service, {
                "url": None, "branch": "main", "context": ".",
                "dockerfile": source.dockerfile}, archive)

    loaded = load_stack([ComposeFile(str(f), _read(f)) for f in files], name=name,
                        environ=dict(os.environ),
                        env_files=[ComposeFile(str(f), _read(f)) for f in env_files],
                        read_file=read_file, build=build)
    return loaded.spec.model_dump(mode="json"), loaded.warnings


def _wait_running(name: str, timeout: float) -> list[dict[str, Any]]:
    """Show replicas coming up until every one runs; a failed one ends the wait."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    deadline = time.monotonic() + timeout
    with client() as api, Progress(TextColumn("{task.description}"), BarColumn(),
                                   TextColumn("{task.completed}/{task.total} running"),
                                   console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"deploying {name}", total=None)
        while True:
            reps = api.get(f"/v1/stacks/{name}/replicas")["items"]
            running = sum(r["state"] == "running" for r in reps)
            bar.update(task, total=len(reps), completed=running)
            failed = [r["name"] for r in reps if r["state"] in FAILED]
            if failed:
                raise BackendError(f"replicas failed: {', '.join(failed)} "
                                   f"(dockyard stack ps {name}; dockyard show NAME)")
            if running == len(reps):
                return list(reps)
            if time.monotonic() > deadline:
                raise BackendError(f"{len(reps) - running} replicas of {name} are not running "
                                   f"after {timeout:.0f}s (dockyard stack ps {name})")
            time.sleep(POLL)


def _with_progress(name: str, call: Callable[[], Any]) -> Any:
    """Run `call` (a deploy that may roll out an update in the request) while a Rich display
    shows, from `stack show`, how many replicas run the current version healthy."""
    from rich.progress import BarColumn, Progress, TextColumn

    done: list[Any] = []
    failed: list[BaseException] = []

    def worker() -> None:
        try:
            done.append(call())
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    with client() as api, Progress(TextColumn("{task.description}"), BarColumn(),
                                   TextColumn("{task.completed}/{task.total} updated"),
                                   console=console, transient=True) as bar:
        task = bar.add_task(f"deploying {name}", total=None)
        while thread.is_alive():
            try:
                view = api.get(f"/v1/stacks/{name}")
            except NotFound:
                view = None  # a new stack: not stored yet
            if view is not None:
                current = {s["name"]: s["version"] for s in view["services"]}
                updated = sum(r["version"] == current.get(r["service"]) and r["state"] ==
                              "running" and r["health"] in ("healthy", "none")
                              for r in view["replicas"])
                bar.update(task, total=sum(s["replicas"] for s in view["services"]),
                           completed=updated,
                           description=f"{name} version {view['version']} {view['status']}")
            thread.join(POLL)
    if failed:
        raise failed[0]
    return done[0]


@stack_app.command("deploy")
def deploy(name: str,
           files: Annotated[list[Path], typer.Option("-f", "--file",
                                                     help="compose file; repeat to merge "
                                                     "overrides in order")],
           env_files: Annotated[list[Path] | None, typer.Option(
               "--env-file", help="variables for ${VAR}; repeat (later wins); default: "
               ".env beside the first file")] = None,
           wait: bool = typer.Option(True, "--wait/--no-wait",
                                     help="wait until every replica runs"),
           timeout: float = typer.Option(300.0, help="seconds to wait"),
           as_json: JsonOpt = False) -> None:
    """Deploy a stack from compose files, or update it; the same files again change nothing."""
    spec, warnings = load(name, files, env_files or [])
    for warning in warnings:
        err_console.print(f"warning: {warning}", highlight=False, markup=False)
    with client(timeout=timeout + 30) as api:
        if as_json:
            print_json(api.post("/v1/stacks", spec, wait=str(wait).lower()))
            return
        if sys.stdout.isatty():
            result = _with_progress(name, lambda: api.post("/v1/stacks", spec))
        else:
            result = api.post("/v1/stacks", spec)
    for action in result["actions"]:
        console.print(action, highlight=False, markup=False)
    if not result["changed"]:
        console.print(f"stack {name} unchanged (version {result['version']})",
                      highlight=False)
        return
    _print_status(result)
    if wait:
        reps = _wait_running(name, timeout)
        console.print(f"stack {name} version {result['version']}: {len(reps)} replicas "
                      "running", highlight=False)
    else:
        console.print(f"stack {name} version {result['version']} deploying", highlight=False)


def _print_status(result: dict[str, Any]) -> None:
    """A rollout that did not end converged says so (paused, still updating, rolled back)."""
    if result.get("status") not in (None, "converged", "converging"):
        reason = f": {result['status_reason']}" if result.get("status_reason") else ""
        err_console.print(f"stack {result['name']} is {result['status']}{reason}",
                          highlight=False, markup=False)


@stack_app.command("ls")
def ls(as_json: JsonOpt = False) -> None:
    """List the project's stacks."""
    print_list("/v1/stacks", as_json, [
        ("NAME", lambda s: s["name"]), ("VERSION", lambda s: s["version"]),
        ("SERVICES", lambda s: len(s["services"])),
        ("RUNNING", lambda s: f"{sum(v['running'] for v in s['services'])}/"
                              f"{sum(v['replicas'] for v in s['services'])}")],
        "no stacks", limit=1000)


REPLICA_COLUMNS = [("NAME", lambda r: r["name"]), ("SERVICE", lambda r: r["service"]),
                   ("STATE", lambda r: r["state"] or "gone"), ("HOST", lambda r: r["host"]),
                   ("IP", lambda r: r["ip"]), ("VERSION", lambda r: r["version"]),
                   ("HEALTH", lambda r: r.get("health") or "-")]


@stack_app.command("ps")
def ps(name: str, as_json: JsonOpt = False) -> None:
    """List a stack's replicas (instances) with their state, host and address."""
    print_list(f"/v1/stacks/{name}/replicas", as_json, REPLICA_COLUMNS, "no replicas")


@stack_app.command("show")
def show(name: str, as_json: JsonOpt = False) -> None:
    """Show a stack: its version, services and replicas."""
    body = fetch(f"/v1/stacks/{name}", as_json)
    if body is None:
        return
    details([("name", body["name"]), ("project", body["project"]),
             ("version", body["version"]),
             ("status", body.get("status", "converged")
              + (f" ({body['status_reason']})" if body.get("status_reason") else "")),
             ("updated", body["updated_at"])])
    table(body["services"], [("SERVICE", lambda s: s["name"]), ("IMAGE", lambda s: s["image"]),
                             ("REPLICAS", lambda s: f"{s['running']}/{s['replicas']}"),
                             ("VERSION", lambda s: s["version"])], "no services")
    table(body["replicas"], REPLICA_COLUMNS, "no replicas")


def _counts(pairs: list[str]) -> dict[str, int]:
    counts = {}
    for pair in pairs:
        svc, sep, value = pair.partition("=")
        if not sep or not svc or not value.isdigit():
            raise InvalidRequest(f"{pair!r} must be SERVICE=N (N a whole number)")
        counts[svc] = int(value)
    return counts


@stack_app.command("scale")
def scale(name: str, counts: Annotated[list[str], typer.Argument(help="SERVICE=N …")],
          wait: bool = typer.Option(True, "--wait/--no-wait",
                                    help="wait until every replica runs"),
          timeout: float = typer.Option(300.0, help="seconds to wait"),
          as_json: JsonOpt = False) -> None:
    """Set the number of replicas of services (a new version of the stack)."""
    body = {"replicas": _counts(counts)}
    with client(timeout=timeout + 30) as api:
        result = api.post(f"/v1/stacks/{name}/scale", body,
                          wait=str(wait and as_json).lower())
    if as_json:
        print_json(result)
        return
    for action in result["actions"]:
        console.print(action, highlight=False, markup=False)
    if wait and result["changed"]:
        _wait_running(name, timeout)
    console.print(f"stack {name} version {result['version']}: " + ", ".join(
        f"{s['name']}={s['replicas']}" for s in result["services"]), highlight=False)


@stack_app.command("history")
def history(name: str, as_json: JsonOpt = False) -> None:
    """List every version of a stack (the current one marked)."""
    print_list(f"/v1/stacks/{name}/history", as_json, [
        ("VERSION", lambda v: f"{v['version']}" + (" *" if v["current"] else "")),
        ("CREATED", lambda v: v["created_at"]),
        ("NOTE", lambda v: v["note"]),
        ("IMAGES", lambda v: ", ".join(f"{s}={i}" for s, i in v["services"].items()))],
        "no versions")


@stack_app.command("rollback")
def rollback(name: str, service: Annotated[str | None, typer.Argument(
                 help="only this service")] = None,
             timeout: float = typer.Option(300.0, help="seconds to wait"),
             as_json: JsonOpt = False) -> None:
    """Go back to the previous version of the stack (a new version with its spec)."""
    with client(timeout=timeout + 30) as api:
        result = api.post(f"/v1/stacks/{name}/rollback", {"service": service})
    if as_json:
        print_json(result)
        return
    for action in result["actions"]:
        console.print(action, highlight=False, markup=False)
    _print_status(result)
    console.print(f"stack {name} version {result['version']} (rolled back)", highlight=False)


@stack_app.command("rm")
def rm(name: str, wait: bool = typer.Option(True, "--wait/--no-wait",
                                            help="wait until every replica is deleted"),
       as_json: JsonOpt = False) -> None:
    """Remove a stack and delete all its replicas (its volumes are kept)."""
    with client() as api:
        result = api.delete(f"/v1/stacks/{name}", wait=str(wait).lower())
    if as_json:
        print_json(result)
        return
    console.print(f"stack {name} removed ({len(result['operations'])} replicas deleted)",
                  highlight=False)
