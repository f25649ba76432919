"""Limits are parsed once, at the API edge: the models hold ints (bytes, bytes/s, bits/s),
while their JSON Schema (the OpenAPI document) still states the string forms the API takes;
a reservation is counted by one rule."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.model.instance import (
    Limits,
    LimitsPatch,
    LimitsSpec,
    Reservation,
    reservations,
)
from dockyard.model.units import MEMORY_SCHEMA, RATE_SCHEMA

HUMAN = ("memory", "read_bps", "write_bps", "ingress", "egress")


@pytest.mark.parametrize("model", [LimitsSpec, LimitsPatch])
@pytest.mark.parametrize("field", HUMAN)
def test_parsed_fields_are_ints_and_their_schema_offers_the_string_form(
        model: type[LimitsSpec | LimitsPatch], field: str) -> None:
    assert model.model_fields[field].annotation == int | None
    schema = model.model_json_schema()["properties"][field]
    assert {"type": "string"} in schema["anyOf"] and {"type": "integer"} in schema["anyOf"]
    assert "pattern" in schema


@pytest.mark.parametrize(("body", "expected"), [
    ({"memory": "256M"}, {"memory_bytes": 256 << 20}),
    ({"memory": 268435456}, {"memory_bytes": 256 << 20}),
    ({"memory": 268435456.0}, {"memory_bytes": 256 << 20}),
    ({"read_bps": "10M", "write_bps": 0}, {"read_bps": 10 << 20, "write_bps": None}),
    ({"ingress": "50mbit", "egress": "0"}, {"ingress_bps": 50_000_000, "egress_bps": None}),
])
def test_launch_limits_reach_the_stored_form_as_parsed(body: dict[str, Any],
                                                       expected: dict[str, Any]) -> None:
    spec = LimitsSpec.model_validate(body)
    stored = spec.to_limits().model_dump()
    assert {k: stored[k] for k in expected} == expected


def test_the_schema_patterns_are_the_parsers() -> None:
    memory = LimitsSpec.model_json_schema()["properties"]["memory"]
    assert memory["pattern"] == MEMORY_SCHEMA["pattern"]
    assert memory["minimum"] == MEMORY_SCHEMA["minimum"]
    ingress = LimitsSpec.model_json_schema()["properties"]["ingress"]
    assert ingress["not"] == RATE_SCHEMA["not"]


@pytest.mark.parametrize("value", [1.5, [], {}, float("inf")])
def test_other_json_types_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="memory"):
        LimitsSpec.model_validate({"memory": value})


def test_a_patch_applies_parsed_values_and_zero_clears() -> None:
    current = Limits(cores=1, cpuset="3", cpus=0.5, memory_bytes=64 << 20, read_bps=1 << 20,
                     ingress_bps=8000)
    patch = LimitsPatch.model_validate({"memory": "128M", "cpus": 0, "read_bps": 0,
                                        "ingress": "1mbit", "pids": 300})
    new = patch.apply(current)
    assert (new.memory_bytes, new.cpus, new.read_bps, new.ingress_bps, new.pids) == (
        128 << 20, None, None, 1_000_000, 300)
    assert (new.cores, new.cpuset, new.write_bps) == (1, "3", None)
    assert current.memory_bytes == 64 << 20  # the patch made a copy


@pytest.mark.parametrize(("stored", "expected"), [
    (Limits().model_dump(), Reservation(cores=0, memory_bytes=0, pids=4096)),
    (Limits(cores=2, memory_bytes=1 << 30, pids=100).model_dump(), Reservation(2, 1 << 30, 100)),
    ({"cores": 1}, Reservation(1, 0, 0)),  # rows written before pids and memory were stored
    ({"memory_bytes": None, "pids": None}, Reservation(0, 0, 0)),
])
def test_reservations(stored: dict[str, Any], expected: Reservation) -> None:
    assert reservations(stored) == expected
    if set(stored) == set(Limits.model_fields):
        assert Limits.model_validate(stored).reservation() == expected
