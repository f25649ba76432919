"""`dockyard build start|ls|show|logs|cancel`: image builds of repositories (issue #13)."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any, BinaryIO

import typer

from dockyard.cli.config import client
from dockyard.cli.output import console, err_console, print_json, print_list, print_one
from dockyard.errors import BackendError, Conflict, InvalidRequest, NotFound

build_app = typer.Typer(help="Image builds of repositories: start, list, logs, cancel.",
                        no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON")]
FINISHED = {"succeeded", "failed", "cancelled"}
POLL = 0.5


def _duration(build: dict[str, Any]) -> str:
    return f"{build['duration']:.1f}s" if build.get("duration") is not None else ""


def _wait(build_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with client() as api:
        while True:
            build: dict[str, Any] = api.get(f"/v1/builds/{build_id}")
            if build["state"] in FINISHED:
                return build
            if time.monotonic() > deadline:
                raise BackendError(f"build {build_id} still {build['state']} after "
                                   f"{timeout:.0f}s (dockyard build logs {build_id} -f)")
            time.sleep(POLL)


def build_service(stack: str, service: str, wanted: dict[str, str | None],
                  archive: BinaryIO | None = None, timeout: float = 1800.0) -> str:
    """`stack deploy` of a service with compose `build:` (`wanted`: the url, branch, context
    and dockerfile compose/buildsrc.py read; url None with `archive`, the packed local
    directory): its repository `STACK-SERVICE` (added on first use) is built like a push, or
    from the uploaded archive, and waited for; the image the service runs."""
    name = f"{stack}-{service}"
    with client() as api:
        try:
            repo = api.get(f"/v1/repos/{name}")
        except NotFound:
            repo = api.post("/v1/repos", {"name": name, **wanted})
        if any(repo[key] != value for key, value in wanted.items()):
            raise Conflict(f"repository {name} builds another source than services.{service}"
                           f".build: change it back or `dockyard repo rm {name}`")
        if archive is None:
            build = api.post(f"/v1/repos/{name}/builds", {"ref": wanted["branch"]})
        else:
            build = api.upload(f"/v1/repos/{name}/builds/upload", archive)
    source = wanted["branch"] if archive is None else "its directory, uploaded"
    err_console.print(f"building {service}: build {build['id']} of repository {name} "
                      f"({source})", highlight=False, markup=False)
    build = _wait(build["id"], timeout)
    if build["state"] != "succeeded":
        raise InvalidRequest(f"services.{service}.build: build {build['id']} "
                             f"{build['state']}: {build['error']} (dockyard build logs "
                             f"{build['id']})")
    err_console.print(f"built {build['image']}", highlight=False, markup=False)
    return str(build["image"])


@build_app.command("start")
def start(repo: str,
          ref: Annotated[str | None, typer.Option(help="branch, tag or commit (default: the "
                                                  "repository's branch)")] = None,
          wait: Annotated[bool, typer.Option("--wait", help="wait until it ends; exit 1 when "
                                             "it did not succeed")] = False,
          timeout: float = typer.Option(1800.0, help="seconds --wait waits"),
          as_json: JsonOpt = False) -> None:
    """Queue a build of a repository."""
    with client() as api:
        build = api.post(f"/v1/repos/{repo}/builds", {"ref": ref})
    if wait:
        build = _wait(build["id"], timeout)
    if as_json:
        print_json(build)
    else:
        console.print(f"build {build['id']} of {build['repo']} ({build['ref']}): "
                      f"{build['state']}", highlight=False, markup=False)
    if wait and build["state"] != "succeeded":
        raise typer.Exit(1)


@build_app.command("ls")
def ls(repo: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False) -> None:
    """List builds (of one repository), newest first."""
    params: dict[str, Any] = {"limit": 1000}
    if repo:
        params["repo"] = repo
    print_list("/v1/builds", as_json, [
        ("ID", lambda b: b["id"]), ("REPO", lambda b: b["repo"]),
        ("COMMIT", lambda b: (b["commit"] or "")[:12]),
        ("AUTHOR", lambda b: b["author"] or ""),
        ("MESSAGE", lambda b: (b["message"] or "")[:40]),
        ("STATE", lambda b: b["state"]), ("DURATION", _duration),
        ("DIGEST", lambda b: (b["digest"] or "")[:19])], "no builds", cursor="before", **params)


@build_app.command("show")
def show(build_id: str, as_json: JsonOpt = False) -> None:
    """Show a build: commit, state, image and digest, the failing step."""
    print_one(f"/v1/builds/{build_id}", as_json, lambda build: [
        (k, v) for k, v in build.items() if v is not None])


@build_app.command("logs")
def logs(build_id: str, follow: bool = typer.Option(False, "--follow", "-f",
                                                    help="until the build ends")) -> None:
    """Print a build's log."""
    with client(timeout=3700) as api:
        for chunk in api.stream(f"/v1/builds/{build_id}/logs", follow=str(follow).lower()):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()


@build_app.command("cancel")
def cancel(build_id: str, as_json: JsonOpt = False) -> None:
    """Cancel a queued build, or stop a running one."""
    with client() as api:
        build = api.post(f"/v1/builds/{build_id}/cancel")
    if as_json:
        print_json(build)
        return
    console.print(f"build {build_id}: {build['state']}"
                  + (" (stopping)" if build["state"] == "running" else ""),
                  highlight=False, markup=False)
