"""`dockyard repo add|ls|show|rm`: git repositories a project builds images from (issue #13).

`repo add` prints the webhook URL and secret once: give them to the git server's push
webhook (Gitea/Forgejo, GitHub or GitLab). Credentials of a private repository (a token, or
an ssh deploy key file) are sent once and never shown again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from dockyard.cli.config import client, read_config
from dockyard.cli.output import console, print_json, print_list, print_one
from dockyard.errors import InvalidRequest

repo_app = typer.Typer(help="Git repositories images are built from (push webhooks, builds).",
                       no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON")]


def _credentials(token: str | None, key_file: Path | None) -> str | None:
    if token and key_file:
        raise InvalidRequest("give either --token or --ssh-key, not both")
    if key_file is None:
        return token
    try:
        return key_file.read_text()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {key_file}: {exc.strerror or exc}") from exc


@repo_app.command("add")
def add(name: str,
        url: Annotated[str, typer.Option("--url", help="git URL of the repository")],
        branch: Annotated[str, typer.Option(help="the branch pushes build")] = "main",
        dockerfile: Annotated[str, typer.Option(help="path in the repository")] = "Dockerfile",
        context: Annotated[str, typer.Option(help="build context in the repository")] = ".",
        image: Annotated[str | None, typer.Option(help="NAME or PROJECT/NAME in the registry "
                                                  "(default: PROJECT/NAME of the repo)")] = None,
        deploy: Annotated[list[str] | None, typer.Option(
            "--deploy", help="STACK/SERVICE to roll out after a build; repeat")] = None,
        token: Annotated[str | None, typer.Option(help="access token (private https "
                                                  "repository)")] = None,
        ssh_key: Annotated[Path | None, typer.Option("--ssh-key", help="file of an ssh deploy "
                                                     "key (private ssh repository)")] = None,
        timeout: Annotated[float | None, typer.Option(help="seconds a build may take")] = None,
        memory: Annotated[str | None, typer.Option(help="memory of the build's steps, e.g. "
                                                   "1G (default: the server's limit)")] = None,
        cpus: Annotated[float | None, typer.Option(help="CPUs of the build's steps (default: "
                                                   "the server's limit)")] = None,
        as_json: JsonOpt = False) -> None:
    """Add a repository; prints its webhook URL and secret (shown this once)."""
    body: dict[str, Any] = {"name": name, "url": url, "branch": branch,
                            "dockerfile": dockerfile, "context": context, "image": image,
                            "deploy": deploy or [], "timeout": timeout, "memory": memory,
                            "cpus": cpus,
                            "credentials": _credentials(token, ssh_key)}
    with client() as api:
        repo = api.post("/v1/repos", body)
    if as_json:
        print_json(repo)
        return
    console.print(f"repository {repo['name']} added ({repo['id']}): image {repo['image']}",
                  highlight=False, markup=False)
    console.print(f"webhook: POST {api_url()}{repo['hook_url']}", highlight=False,
                  markup=False)
    console.print(f"secret:  {repo['webhook_secret']}  (shown once)", highlight=False,
                  markup=False)


def api_url() -> str:
    """The server's URL as this CLI reaches it (the webhook's base)."""
    return (os.environ.get("DOCKYARD_URL") or str(read_config().get("url") or "")).rstrip("/")


@repo_app.command("ls")
def ls(as_json: JsonOpt = False) -> None:
    """List the project's repositories."""
    print_list("/v1/repos", as_json, [
        ("NAME", lambda r: r["name"]), ("URL", lambda r: r["url"] or "(uploaded archives)"),
        ("BRANCH", lambda r: r["branch"]), ("IMAGE", lambda r: r["image"]),
        ("DEPLOY", lambda r: ",".join(r["deploy"]))], "no repositories", limit=1000)


@repo_app.command("show")
def show(name: str, as_json: JsonOpt = False) -> None:
    """Show a repository (never its secret or credentials)."""
    print_one(f"/v1/repos/{name}", as_json, lambda repo: [
        (k, ", ".join(v) if isinstance(v, list) else v) for k, v in repo.items()])


@repo_app.command("rm")
def rm(name: str) -> None:
    """Remove a repository and its builds (the images stay in the registry)."""
    with client() as api:
        api.delete(f"/v1/repos/{name}")
    console.print(f"repository {name} removed", highlight=False, markup=False)
