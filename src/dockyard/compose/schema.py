"""Validation against the vendored compose-spec JSON Schema (schema/README.md).

Each problem is one line `JSON.PATH: message`, e.g.
`services.web.deploy.replicas: 'x' is not of type 'integer'`; an unexpected key is named by
its own path (`services.web.cap_addd: not a Compose key`).
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft201909Validator
from jsonschema.exceptions import ValidationError, best_match

from dockyard.compose.interpolate import dotted

SCHEMA_FILE = "compose-spec.json"


def _overlay(schema: dict[str, Any]) -> dict[str, Any]:
    """The two properties newer compose-spec schemas have and the vendored 2021 one lacks
    (schema/README.md): the project `name` and `deploy.resources.limits.pids`."""
    schema = copy.deepcopy(schema)
    schema["properties"]["name"] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"}
    limits = schema["definitions"]["deployment"]["properties"]["resources"]["properties"]
    limits["limits"]["properties"]["pids"] = {"type": "integer"}
    return schema


@lru_cache(maxsize=1)
def validator() -> Draft201909Validator:
    text = resources.files("dockyard.compose").joinpath("schema", SCHEMA_FILE).read_text()
    schema = _overlay(json.loads(text))
    Draft201909Validator.check_schema(schema)
    return Draft201909Validator(schema)


def schema_problems(tree: Any) -> list[str]:
    """Every schema violation of a file's tree, sorted by path."""
    problems: set[str] = set()
    for error in validator().iter_errors(tree):
        problems.update(_describe(error))
    return sorted(problems)


def _describe(error: ValidationError) -> list[str]:
    while error.context:
        # oneOf / anyOf: the branch that got deepest into the value says the most useful
        # thing (`depends_on.db: 'condition' is a required property`, not "not an array")
        deepest = max(len(e.absolute_path) for e in error.context)
        error = best_match(e for e in error.context if len(e.absolute_path) == deepest)
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extras = _unexpected(error.instance, error.schema)
        if extras:
            return [f"{dotted((*path, key))}: not a Compose key" for key in extras]
    return [f"{dotted(path)}: {error.message}"]


def _unexpected(instance: dict[str, Any], schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    known = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    return sorted(str(key) for key in instance
                  if key not in known and not any(re.search(p, str(key)) for p in patterns))
