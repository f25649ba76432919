"""schemathesis against the running server's `/openapi.json`, with the admin token and all its
checks (`--checks all`): no 5xx; every response, header and status as the schema declares
(the `{"error": {code, message}}` bodies included); what the schema accepts is accepted
(positive data acceptance: no 400/422 for a schema-valid request) and what it refuses is
refused (negative data rejection); an undeclared method answers 405 with `Allow`. Phases:
the schema's examples, the coverage phase (boundaries of every pattern, length and bound;
undeclared methods; missing parameters) and 15 generated cases per operation, positive and
negative, from a fixed seed (`DOCKYARD_FUZZ_SEED` picks another one); under `make soak` 100
per operation from a fresh seed (tests/budget.py). Excluded: the agent
feed (host tokens, machine traffic) and the console websocket; the image import runs on its
own without positive data acceptance (see IMPORT: a schema-valid body is any bytes, most of
them no archive), with a build context upload, and so does a stack deploy (DEPLOY). Long
polls and follows are pinned off (`wait=0`, `follow=false`): they would hold every example.
Whatever the fuzzer created is removed at the end; a subnet overlapping a host route is
refused with 409."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.client import ApiClient
from dockyard.errors import DockyardError
from tests.budget import loop_count, loop_seed
from tests.integration.dockyard_env import VENV_BIN, Dockyard

# what the fuzzer may have made, by list path → (item key used in the delete path, delete path)
CREATED = {"/v1/stacks": "/v1/stacks/{}", "/v1/instances": "/v1/instances/{}",
           "/v1/volumes": "/v1/volumes/{}",
           "/v1/networks": "/v1/networks/{}", "/v1/alerts/rules": "/v1/alerts/rules/{}",
           "/v1/webhooks": "/v1/webhooks/{}", "/v1/hosts": "/v1/hosts/{}",
           "/v1/projects": "/v1/projects/{}"}
EXCLUDED = r"^/v1/agent/|/console$"
SEED = int(os.environ.get("DOCKYARD_FUZZ_SEED") or loop_seed(18))
EXAMPLES = loop_count(suite=15, soak=100)  # generated cases per operation
CONFIG = """\
# a long poll or a follow would hold every example
[parameters]
"query.wait" = 0
"query.follow" = false

"""
# The exceptions to positive data acceptance: an image import's body is a `docker save`
# archive, a build context upload's a tar archive, and no JSON Schema can say which bytes
# make one (random bytes are refused 422).
IMPORT = "^/v1/images/import$|^/v1/repos/[^/]+/builds/upload$"
# And a stack deploy's body: the compose model the CLI loaded, whose rules cross fields (a
# service's name is its key, a replica's name `STACK-SERVICE-N` fits 63 characters, depends_on
# names declared services and has no cycle, a service's networks are the stack's); JSON Schema
# states each field, not these, so a schema-valid body may still be refused with a 422 naming
# them. Every other check runs on it.
DEPLOY = "POST /v1/stacks"


def _names(api: ApiClient) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in CREATED:
        items = api.list_all(path) if path != "/v1/alerts/rules" else api.get(path)["items"]
        found[path] = {str(i.get("name") if path != "/v1/webhooks" else i["id"])
                       for i in items}
    return found


def _remove_new(api: ApiClient, before: dict[str, set[str]]) -> None:
    """Stacks first (they hold instances), then instances (they hold volumes and addresses),
    networks and projects last."""
    for path, template in CREATED.items():
        for ref in _names(api)[path] - before[path]:
            with contextlib.suppress(DockyardError):
                api.request("DELETE", template.format(ref),
                            params={"force": "true", "wait": "true"}
                            if path == "/v1/instances" else
                            {"wait": "true"} if path == "/v1/stacks" else None)


@pytest.fixture(scope="module")
def fuzz_target(dy: Dockyard) -> Iterator[Dockyard]:
    with dy.api() as api:
        before = _names(api)
    try:
        yield dy
    finally:
        with dy.api() as api:
            _remove_new(api, before)


def _schemathesis(target: Dockyard, workdir: Path, *select: str) -> None:
    """One `schemathesis run` with all checks; fails with its report."""
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    args = [str(VENV_BIN / "schemathesis"), "--config-file", str(config), "run",
            f"{target.url}/openapi.json", "--checks", "all", "--mode", "all",
            "--phases", "examples,coverage,fuzzing", "--max-examples", str(EXAMPLES),
            "--seed", str(SEED), "--workers", "1", "--generation-database", "none",
            "--request-timeout", "60", "--no-color", "--suppress-health-check", "all",
            "-H", f"Authorization: Bearer {target.token()}", *select]
    if target.ca:
        args += ["--tls-verify", str(target.ca)]
    run = subprocess.run(args, capture_output=True, text=True, timeout=1500, cwd=workdir)
    report = run.stdout + run.stderr
    (workdir / "report.txt").write_text(report)
    assert run.returncode == 0, f"schemathesis (seed {SEED}) found (all of it in " \
        f"{workdir / 'report.txt'}):\n{report[-12000:]}"
    assert "passed" in report


@pytest.mark.soak
def test_api_conforms(fuzz_target: Dockyard, tmp_path: Path) -> None:
    _schemathesis(fuzz_target, tmp_path, "--exclude-path-regex", f"{EXCLUDED}|{IMPORT}",
                  "--exclude-name", DEPLOY)


def test_image_import_conforms(fuzz_target: Dockyard, tmp_path: Path) -> None:
    _schemathesis(fuzz_target, tmp_path, "--include-path-regex", IMPORT,
                  "--exclude-checks", "positive_data_acceptance")


def test_stack_deploy_conforms(fuzz_target: Dockyard, tmp_path: Path) -> None:
    _schemathesis(fuzz_target, tmp_path, "--include-name", DEPLOY,
                  "--exclude-checks", "positive_data_acceptance")


def host_route() -> str:
    """A subnet this machine routes that is not one of Dockyard's own bridges."""
    for line in subprocess.run(["ip", "-4", "route"], capture_output=True,
                               text=True).stdout.splitlines():
        dst, _, rest = line.partition(" ")
        if "/" in dst and " dev dy" not in f" {rest}":
            return dst
    pytest.skip("no host route to collide with")


def test_subnet_overlapping_a_host_route_is_refused(fuzz_target: Dockyard) -> None:
    with fuzz_target.api() as api:
        with pytest.raises(DockyardError) as info:
            api.post("/v1/networks", {"name": "fz-route", "subnet": host_route()})
        assert info.value.status == 409
