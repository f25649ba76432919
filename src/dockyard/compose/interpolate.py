"""`${VAR}` interpolation as the Compose Specification defines it ("Interpolation").

    $$              a literal `$`
    $VAR  ${VAR}    the value; unset → "" and a warning (the spec: warn, substitute "")
    ${VAR:-dflt}    dflt if VAR is unset or empty      ${VAR-dflt}   dflt if VAR is unset
    ${VAR:?err}     error if VAR is unset or empty     ${VAR?err}    error if VAR is unset
    ${VAR:+alt}     alt if VAR is set and not empty    ${VAR+alt}    alt if VAR is set

Defaults, errors and alternatives may nest (`${A:-${B:-x}}`); only the branch used is
interpolated. A `$` followed by anything else is an error (Compose: "invalid template").
Values are interpolated, mapping keys are not; a value that came from interpolation is
turned back into an integer / number / boolean where the schema wants one (`CASTS`), as
Compose does for `replicas: ${N}`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from dockyard.compose.tags import Override
from dockyard.errors import InvalidRequest

Lookup = Callable[[str], "str | None"]

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")

# Paths (in the file's tree, `*` = any key) whose interpolated strings become numbers or
# booleans, so `${N}` can stand where the schema wants one.
CASTS: dict[tuple[str, ...], type] = {
    ("services", "*", "deploy", "replicas"): int,
    ("services", "*", "deploy", "resources", "limits", "pids"): int,
    ("services", "*", "deploy", "update_config", "parallelism"): int,
    ("services", "*", "deploy", "rollback_config", "parallelism"): int,
    ("services", "*", "deploy", "update_config", "max_failure_ratio"): float,
    ("services", "*", "deploy", "rollback_config", "max_failure_ratio"): float,
    ("services", "*", "healthcheck", "retries"): float,
    ("services", "*", "healthcheck", "disable"): bool,
    ("services", "*", "x-dockyard", "cores"): int,
    ("services", "*", "x-dockyard", "spread"): bool,
    ("services", "*", "x-dockyard", "http", "port"): int,
    ("services", "*", "volumes", "*", "read_only"): bool,
    ("networks", "*", "external"): bool,
    ("volumes", "*", "external"): bool,
}


def substitute(text: str, lookup: Lookup, where: str, warnings: list[str]) -> str:
    """`text` with every `$…` replaced. Raises InvalidRequest naming `where`."""
    out: list[str] = []
    pos = 0
    while True:
        dollar = text.find("$", pos)
        if dollar < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:dollar])
        nxt = text[dollar + 1:dollar + 2]
        if nxt == "$":
            out.append("$")
            pos = dollar + 2
        elif nxt == "{":
            end = _closing_brace(text, dollar + 2, where)
            out.append(_braced(text[dollar + 2:end], lookup, where, warnings))
            pos = end + 1
        else:
            match = _NAME.match(text, dollar + 1)
            if match is None:
                raise InvalidRequest(f"{where}: invalid interpolation in {text[:80]!r}: '$' must "
                                     "be followed by a name, '{' or '$' (write '$$' for a "
                                     "literal '$')")
            out.append(_value(match.group(), lookup, warnings, where))
            pos = match.end()


def _closing_brace(text: str, start: int, where: str) -> int:
    depth, pos = 0, start
    while pos < len(text):
        if text.startswith("$$", pos):
            pos += 2
            continue
        if text.startswith("${", pos):
            depth += 1
            pos += 2
            continue
        if text[pos] == "}":
            if depth == 0:
                return pos
            depth -= 1
        pos += 1
    raise InvalidRequest(f"{where}: invalid interpolation in {text[:80]!r}: '${{' is never "
                         "closed by '}'")


def _braced(inner: str, lookup: Lookup, where: str, warnings: list[str]) -> str:
    match = _NAME.match(inner)
    if match is None:
        raise InvalidRequest(f"{where}: invalid interpolation '${{{inner[:60]}}}': a variable "
                             "name must match [_A-Za-z][_A-Za-z0-9]*")
    name, rest = match.group(), inner[match.end():]
    if not rest:
        return _value(name, lookup, warnings, where)
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise InvalidRequest(f"{where}: invalid interpolation '${{{inner[:60]}}}': after the "
                             "name comes '}', ':-', '-', ':?', '?', ':+' or '+'")
    arg = rest[len(operator):]
    value = lookup(name)
    present = value is not None and (value != "" or not operator.startswith(":"))
    if operator.endswith("-"):
        return value if present and value is not None else substitute(arg, lookup, where,
                                                                      warnings)
    if operator.endswith("+"):
        return substitute(arg, lookup, where, warnings) if present else ""
    if present and value is not None:
        return value
    message = substitute(arg, lookup, where, warnings)
    raise InvalidRequest(f"{where}: required variable {name} is missing a value"
                         + (f": {message}" if message else ""))


def _value(name: str, lookup: Lookup, warnings: list[str], where: str) -> str:
    value = lookup(name)
    if value is None:
        warnings.append(f"{where}: variable {name} is not set; using an empty string")
        return ""
    return value


def interpolate_tree(tree: Any, lookup: Lookup, warnings: list[str],
                     path: tuple[str, ...] = ()) -> Any:
    """A copy of a parsed YAML tree with every string value interpolated (inside
    `!override` too)."""
    if isinstance(tree, Override):
        return Override(interpolate_tree(tree.value, lookup, warnings, path))
    if isinstance(tree, dict):
        return {key: interpolate_tree(value, lookup, warnings, (*path, str(key)))
                for key, value in tree.items()}
    if isinstance(tree, list):
        return [interpolate_tree(value, lookup, warnings, (*path, f"[{index}]"))
                for index, value in enumerate(tree)]
    if isinstance(tree, str) and "$" in tree:
        value = substitute(tree, lookup, dotted(path), warnings)
        return _cast(value, path) if "$" in tree.replace("$$", "") else value
    return tree


def dotted(path: tuple[str | int, ...]) -> str:
    """`services.web.volumes[0].target` from a path of keys and list indexes."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("["):
            text += part
        else:
            text += f".{part}" if text else part
    return text or "(top)"


def _cast(value: str, path: tuple[str, ...]) -> Any:
    wanted = next((kind for pattern, kind in CASTS.items() if _matches(pattern, path)), None)
    text = value.strip()
    try:
        if wanted is int:
            return int(text)
        if wanted is float:
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
    except ValueError:
        return value  # the schema names the path and the wrong value
    if wanted is bool and text.lower() in ("true", "false", "yes", "no", "on", "off"):
        return text.lower() in ("true", "yes", "on")
    return value


def _matches(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    return len(pattern) == len(path) and all(p in ("*", q) for p, q in zip(pattern, path,
                                                                           strict=True))
