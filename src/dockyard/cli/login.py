"""`login URL`: checks a token against the server, then writes the CLI config; an https
server's cluster CA is trusted by --ca FILE or by its SHA-256 --fingerprint."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from dockyard.cli.config import config_path, write_config
from dockyard.cli.output import console
from dockyard.errors import InvalidRequest


def _trust(url: str, fingerprint: str | None) -> Path | None:
    """The CA file to trust for an https `url` that the system's trust store refuses: the
    server's cluster CA once its SHA-256 fingerprint matches `fingerprint` (or the user, at a
    terminal, accepted it), kept next to the CLI config."""
    from dockyard import tls  # cryptography: only to check a server's CA
    from dockyard.client import fetch_cluster_ca, trusted_by_system
    if fingerprint is None and trusted_by_system(url):
        return None
    pem = fetch_cluster_ca(url)
    seen = tls.fingerprint(pem)  # computed here, never taken from the server's reply
    if fingerprint is not None:
        if not tls.same_fingerprint(seen, fingerprint):
            raise InvalidRequest(f"the server's CA has fingerprint {seen}, not {fingerprint}: "
                                 "not trusted")
    elif sys.stdin.isatty():
        console.print(f"cluster CA of {url}: SHA-256 {seen}", soft_wrap=True)
        if not typer.confirm("trust it (compare with `dockyard up`'s output)?"):
            raise typer.Exit(1)
    else:
        raise InvalidRequest(f"{url} has a certificate from an unknown CA (SHA-256 {seen}): "
                             "pass --fingerprint with the fingerprint `dockyard up` printed, "
                             "or --ca with the cluster CA file")
    split = urlsplit(url)
    path = config_path().parent / f"ca-{split.hostname}-{split.port or 443}.pem"
    tls.write_file(path, pem.encode())
    return path


def login(url: str, token: Annotated[str | None, typer.Option(
              envvar="DOCKYARD_TOKEN", help="the token (asked for when not given)")] = None,
          ca: Annotated[Path | None, typer.Option(
              help="the cluster CA (ca.pem) of an https server")] = None,
          fingerprint: Annotated[str | None, typer.Option(
              help="SHA-256 of the cluster CA, as `dockyard up` printed it: its CA is "
              "fetched from the server and trusted when it matches")] = None,
          ) -> None:
    """Check a token against a Dockyard server and write the CLI config for it.

    An https server whose certificate the system does not trust (the cluster CA of `dockyard
    up`): give --ca FILE or --fingerprint SHA256; at a terminal, the CA's fingerprint is shown
    and asked about."""
    from dockyard.client import ApiClient
    url = url.rstrip("/")
    if ca is None and url.startswith("https://"):
        ca = _trust(url, fingerprint)
    secret = token or getpass.getpass("token: ")
    with ApiClient(url, secret, timeout=30, ca=ca) as api:  # checks the server against `ca`
        who = api.get("/v1/whoami")
    path = write_config(url, secret, ca=ca.resolve() if ca else None)
    console.print(f"logged in to {url} as {who['role']} of project {who['project']} "
                  f"(config {path})")
