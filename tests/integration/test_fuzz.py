"""schemathesis against the running server's `/openapi.json`, with the admin token: 50
examples per operation, no 5xx, every response as the schema declares (including the
`{"error": {code, message}}` bodies). Excluded: the agent feed (host tokens, machine
traffic), the console websocket and the metrics page. Whatever the fuzzer created is removed
at the end; a subnet overlapping a host route is refused with 409."""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from dockyard.client import ApiClient
from dockyard.errors import DockyardError
from tests.integration.dockyard_env import Dockyard

# what the fuzzer may have made, by list path → (item key used in the delete path, delete path)
CREATED = {"/v1/instances": "/v1/instances/{}", "/v1/volumes": "/v1/volumes/{}",
           "/v1/networks": "/v1/networks/{}", "/v1/alerts/rules": "/v1/alerts/rules/{}",
           "/v1/webhooks": "/v1/webhooks/{}", "/v1/hosts": "/v1/hosts/{}"}


def _names(api: ApiClient) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in CREATED:
        items = api.list_all(path) if path != "/v1/alerts/rules" else api.get(path)["items"]
        found[path] = {str(i.get("name") if path != "/v1/webhooks" else i["id"])
                       for i in items}
    return found


def _remove_new(api: ApiClient, before: dict[str, set[str]]) -> None:
    """Instances first (they hold volumes and addresses), networks last."""
    for path, template in CREATED.items():
        for ref in _names(api)[path] - before[path]:
            with contextlib.suppress(DockyardError):
                api.request("DELETE", template.format(ref),
                            params={"force": "true"} if path == "/v1/instances" else None)


@pytest.fixture(scope="module")
def fuzz_target(dy: Dockyard) -> Iterator[Dockyard]:
    with dy.api() as api:
        before = _names(api)
    try:
        yield dy
    finally:
        with dy.api() as api:
            _remove_new(api, before)


EXCLUDED = re.compile(r"^/v1/agent/|/console$|^/metrics")


def _fuzz(operation: Any, token: str, verify: str | bool) -> None:
    """50 generated cases of one operation; hypothesis shrinks a failure to its smallest."""
    @given(case=operation.as_strategy())
    @settings(max_examples=50, deadline=timedelta(seconds=30), database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
    def run(case: Any) -> None:
        if isinstance(case.query, dict):  # long polls and follows would hold every example
            case.query.update({k: 0 for k in ("wait",) if k in case.query})
            case.query.update({k: False for k in ("follow",) if k in case.query})
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                               checks=[not_a_server_error, response_schema_conformance],
                               timeout=30, verify=verify)

    run()


def test_api_conforms(fuzz_target: Dockyard) -> None:
    """Every operation in turn (the schema exists only once the server runs, so this is one
    test that names each failing operation rather than a parametrized one)."""
    verify = str(fuzz_target.ca) if fuzz_target.ca else True  # requests' verify=
    schema = schemathesis.openapi.from_url(f"{fuzz_target.url}/openapi.json", verify=verify)
    failures: list[str] = []
    fuzzed = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if EXCLUDED.search(operation.path):
            continue
        fuzzed += 1
        try:
            _fuzz(operation, fuzz_target.token(), verify)
        except (Exception, BaseExceptionGroup) as exc:  # collected, reported together below
            failures.append(f"{operation.method.upper()} {operation.path}: "
                            f"{type(exc).__name__}: {str(exc)[:1500]}")
    assert fuzzed > 20
    assert not failures, "\n\n".join(failures)


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
