"""`.env` files as Compose reads them (`--env-file`, a service's `env_file`).

    # a comment                 KEY=value            unquoted: trimmed, ` #` starts a comment
    export KEY=value            KEY='lit $X'         single quotes: literal, may span lines
    KEY="a\\nb ${X:-1}"          double quotes: \\n \\t \\r \\\\ \\" \\$ escapes, may span lines
    KEY                         the value of KEY in the given environment (skipped if unset)

Unquoted and double-quoted values are interpolated (`${VAR}` …) from the variables defined
earlier in the same file, then the given environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from dockyard.compose.interpolate import substitute
from dockyard.errors import InvalidRequest

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(=)?\s*(.*)$", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$$"}


def parse_env_file(text: str, environ: Mapping[str, str], source: str = ".env") -> dict[str, str]:
    """The variables of an env file, in file order. Bad lines raise InvalidRequest naming the
    file and line."""
    result: dict[str, str] = {}
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise InvalidRequest(f"{source}:{number}: expected KEY=VALUE, got {line[:60]!r}")
        key, equals, rest = match.groups()
        where = f"{source}:{number}"
        if not equals:
            if rest.strip() and not rest.lstrip().startswith("#"):
                raise InvalidRequest(f"{where}: expected KEY=VALUE, got {line[:60]!r}")
            if key in environ:
                result[key] = environ[key]
            continue
        if rest[:1] in ("'", '"'):
            value, number = _quoted(rest, lines, number, where)
            if rest[0] == '"':
                value = _expand(value, result, environ, where)
        else:
            value = _expand(_strip_comment(rest).strip(), result, environ, where)
        result[key] = value
    return result


def _quoted(rest: str, lines: list[str], number: int, where: str) -> tuple[str, int]:
    """The text between the opening quote of `rest` and its closing one, which may be on a
    later line; returns it and the index of the next line. In double quotes `\\$` becomes `$$`
    (a literal `$` once interpolated)."""
    quote, body, pos = rest[0], rest[1:], 0
    out: list[str] = []
    while True:
        while pos < len(body):
            char = body[pos]
            if quote == '"' and char == "\\" and pos + 1 < len(body):
                nxt = body[pos + 1]
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                pos += 2
                continue
            if char == quote:
                tail = _strip_comment(body[pos + 1:]).strip()
                if tail:
                    raise InvalidRequest(f"{where}: unexpected text after the closing quote: "
                                         f"{tail[:40]!r}")
                return "".join(out), number
            out.append(char)
            pos += 1
        if number >= len(lines):
            raise InvalidRequest(f"{where}: the quoted value is never closed ({quote})")
        out.append("\n")
        body, pos = lines[number], 0
        number += 1


def _strip_comment(text: str) -> str:
    match = re.search(r"(^|\s)#", text)
    return text if match is None else text[:match.start()]


def _expand(value: str, earlier: Mapping[str, str], environ: Mapping[str, str],
            where: str) -> str:
    def lookup(name: str) -> str | None:
        return earlier.get(name, environ.get(name))

    warnings: list[str] = []
    return substitute(value, lookup, where, warnings)
