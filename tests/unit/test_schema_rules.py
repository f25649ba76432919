"""The OpenAPI document states the server's rules: every string a field's JSON Schema accepts
(pattern, length, bounds) its validator accepts too; and a 405 names every method of the path
in `Allow`, through the one error handler."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from dockyard import api_errors
from dockyard.model.alerts import AlertRuleCreate, WebhookCreate
from dockyard.model.image import ImagePush, split_ref
from dockyard.model.instance import InstanceCreate, LimitsPatch, LimitsSpec
from dockyard.model.network import NetworkCreate
from dockyard.model.tenancy import ProjectCreate
from dockyard.model.units import MAX_AMOUNT
from dockyard.model.validators import (
    CAPABILITY_PATTERN,
    CONTAINER_PATH_SCHEMA,
    ENV_SCHEMA,
    LOCAL_IMAGE_RE,
    SSH_KEY_PATTERN,
    VOLUME_SOURCE_SCHEMA,
)
from dockyard.model.volume import VolumeCreate

IMAGE = "dockyard/busybox:latest"
# (model, field, the other fields a valid body needs)
STRING_FIELDS: list[tuple[type[BaseModel], str, dict[str, Any]]] = [
    (InstanceCreate, "name", {"image": IMAGE}),
    (InstanceCreate, "image", {"name": "a"}),
    (InstanceCreate, "hostname", {"name": "a", "image": IMAGE}),
    (InstanceCreate, "ip", {"name": "a", "image": IMAGE}),
    (InstanceCreate, "anti_affinity", {"name": "a", "image": IMAGE}),
    (NetworkCreate, "name", {"subnet": "10.99.0.0/16"}),
    (NetworkCreate, "subnet", {"name": "a"}),
    (ProjectCreate, "name", {}),
    (VolumeCreate, "name", {}),
    (AlertRuleCreate, "name", {"kind": "oom", "threshold": 1}),
    (WebhookCreate, "url", {}),
    (ImagePush, "source", {}),
]
SIZE_FIELDS = ["memory", "read_bps", "write_bps", "ingress", "egress"]


def _strings(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    pattern = re.compile(schema["pattern"].replace("$", r"\Z"))
    return st.from_regex(pattern).filter(
        lambda s: schema.get("minLength", 0) <= len(s) <= schema.get("maxLength", 10**6)
        and s not in schema.get("not", {}).get("enum", ()))


def _field_schema(model: type[BaseModel], field: str) -> dict[str, Any]:
    schema: dict[str, Any] = model.model_json_schema()["properties"][field]
    assert "pattern" in schema, f"{model.__name__}.{field} shows no pattern"
    return schema


@pytest.mark.parametrize(("model", "field", "rest"), STRING_FIELDS,
                         ids=[f"{m.__name__}.{f}" for m, f, _ in STRING_FIELDS])
def test_what_a_string_schema_accepts_the_model_accepts(
        model: type[BaseModel], field: str, rest: dict[str, Any]) -> None:
    @settings(max_examples=50, deadline=None, database=None)
    @given(value=_strings(_field_schema(model, field)))
    def accepted(value: str) -> None:
        model.model_validate({**rest, field: value})

    accepted()


@pytest.mark.parametrize("model", [LimitsSpec, LimitsPatch])
@pytest.mark.parametrize("field", SIZE_FIELDS)
def test_what_a_size_schema_accepts_the_limits_accept(model: type[BaseModel],
                                                      field: str) -> None:
    schema = _field_schema(model, field)
    low, high = schema["minimum"], schema["maximum"]
    assert high == MAX_AMOUNT
    excluded = schema.get("not", {"minimum": 1, "maximum": 0})
    numbers = st.integers(low, high).filter(
        lambda n: not excluded["minimum"] <= n <= excluded["maximum"])

    @settings(max_examples=50, deadline=None, database=None)
    @given(value=_strings(schema) | numbers)
    def accepted(value: str | int) -> None:
        model.model_validate({field: value})

    accepted()


@settings(max_examples=100, deadline=None, database=None)
@given(value=st.from_regex(re.compile(LOCAL_IMAGE_RE.pattern.replace("$", r"\Z"))))
def test_an_import_name_has_no_registry_part(value: str) -> None:
    registry, name, _ = split_ref(value)
    assert registry == "" and name


@settings(max_examples=60, deadline=None, database=None)
@given(caps=st.lists(_strings({"pattern": CAPABILITY_PATTERN}), max_size=3),
       key=_strings({"pattern": SSH_KEY_PATTERN}),
       env_key=_strings(ENV_SCHEMA["propertyNames"]),
       env_value=_strings(ENV_SCHEMA["additionalProperties"]),
       source=_strings(VOLUME_SOURCE_SCHEMA["anyOf"][0]) | _strings(
           VOLUME_SOURCE_SCHEMA["anyOf"][1]).filter(lambda p: not re.match(
               VOLUME_SOURCE_SCHEMA["anyOf"][1]["not"]["pattern"], p)),
       target=_strings({"pattern": "^/[A-Za-z0-9_/.-]*$"}).filter(lambda p: not any(
           re.search(n["pattern"], p) for n in CONTAINER_PATH_SCHEMA["not"]["anyOf"])))
def test_what_the_list_and_map_schemas_accept_a_launch_accepts(
        caps: list[str], key: str, env_key: str, env_value: str, source: str,
        target: str) -> None:
    InstanceCreate.model_validate({
        "name": "a", "image": IMAGE, "cap_add": caps, "ssh_keys": [key],
        "env": {env_key: env_value}, "volumes": [{"source": source, "target": target}]})


def test_the_schema_refuses_what_the_validators_refuse() -> None:
    """A few refusals each: the schema shows them (so a client knows before it asks)."""
    for model, field, values in (
            (InstanceCreate, "name", ["", "-a", "A", "a" * 64]),
            (ProjectCreate, "name", ["dockyard", "snapshot"]),
            (WebhookCreate, "url", ["ftp://example"]),
            (InstanceCreate, "image", ["Team/app", "A"])):
        schema = _field_schema(model, field)
        for value in values:
            matches = re.match(schema["pattern"], value) and \
                schema["minLength"] <= len(value) <= schema.get("maxLength", 10**6) and \
                value not in schema.get("not", {}).get("enum", ())
            assert not matches, (model.__name__, field, value)


def test_405_names_every_method_of_the_path_in_allow() -> None:
    app = FastAPI()
    api_errors.install(app)

    @app.get("/things/{ref}")
    def show(ref: str) -> dict[str, str]:
        return {"ref": ref}

    @app.delete("/things/{ref}")
    def delete(ref: str) -> dict[str, str]:
        return {"ref": ref}

    async def trace() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as client:
            return await client.request("TRACE", "/things/x")

    resp = asyncio.run(trace())
    assert resp.status_code == 405
    assert resp.json()["error"]["code"] == "method_not_allowed"
    assert resp.headers["allow"] == "DELETE, GET"
