"""Typer's value conversion, without pydantic, for the plain parameters of a command.

Typer (0.2x) converts every parameter value, defaults included, through a pydantic
`TypeAdapter` that it builds at the first value: importing pydantic (and through it
`importlib.metadata`) and building the adapters was about 90 ms of a command's start-up, more
than half the 0.15 s budget of issue 18. For the parameter kinds the CLI declares (`str`,
`int`, `float`, `Path`, an `Enum`, a list of these) a value that is plainly valid is converted
here to exactly what Typer's adapter returns for it, with Typer's own helpers for choices and
paths; anything else (a malformed number, a constrained or custom-parsed parameter, a kind
not listed) goes to Typer's own conversion, so its results and error messages stay Typer's.
tests/unit/test_cli_coercion.py compares both on a table of values.

This leans on two internals of Typer (`_TyperParameter._runtime_param`, which Typer fills
lazily, and `typer._coercion.RuntimeParam`); with a Typer that has neither, `install` leaves
the command as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

try:
    from typer import _coercion
    from typer._param_types import coerce_cli_choice, coerce_cli_path, routes_to_path
except ImportError:  # pragma: no cover - a Typer without pydantic conversion
    _coercion = None  # type: ignore[assignment]

_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+)?")

Convert = Callable[[Any, Any, Any], Any]  # (value, param, ctx) -> value


class Declined(Exception):
    """The value is not plainly valid: Typer's own conversion decides."""


def _str(value: Any, param: Any, ctx: Any) -> str:
    if isinstance(value, str):
        return value
    raise Declined


def _bool(value: Any, param: Any, ctx: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise Declined


def _int(value: Any, param: Any, ctx: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT.fullmatch(value):
        return int(value)
    raise Declined


def _float(value: Any, param: Any, ctx: Any) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, str) and _FLOAT.fullmatch(value):
        return float(value)
    raise Declined


def _leaf(annotation: Any, info: Any) -> Convert | None:
    """The converter of one value of `annotation`, or None: Typer's conversion only."""
    if getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
        return None
    if annotation is str:
        return _str
    if annotation is bool:
        return _bool
    if annotation in (int, float):
        if info.clamp:
            return None
        number = _int if annotation is int else _float

        def bounded(value: Any, param: Any, ctx: Any) -> Any:
            result = number(value, param, ctx)
            if (info.min is not None and result < info.min) or (
                    info.max is not None and result > info.max):
                raise Declined  # Typer says which bound
            return result
        return bounded if info.min is not None or info.max is not None else number
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = list(annotation)

        def choice(value: Any, param: Any, ctx: Any) -> Any:
            return coerce_cli_choice(value, choices=choices,
                                     case_sensitive=info.case_sensitive, ctx=ctx)
        return choice
    if (isinstance(annotation, type) and issubclass(annotation, Path)
            and routes_to_path(annotation, info)):
        def path(value: Any, param: Any, ctx: Any) -> Any:
            if isinstance(value, str) and value:  # what pydantic's Path(str) does, first
                value = annotation(value)
            if not isinstance(value, annotation):
                raise Declined
            return coerce_cli_path(value, info, path_type=annotation, param=param, ctx=ctx)
        return path
    return None


def converter(annotation: Any, info: Any) -> Convert | None:
    """The converter of a parameter's whole value (a list: of each item), or None."""
    if get_origin(annotation) is list:
        (item_type,) = get_args(annotation)
        leaf = _leaf(item_type, info)
        if leaf is None:
            return None
        item = leaf

        def each(value: Any, param: Any, ctx: Any) -> list[Any]:
            items = value if isinstance(value, list | tuple) else [value]
            return [item(v, param, ctx) for v in items]
        return each
    return _leaf(annotation, info)


if _coercion is not None:
    @dataclass(frozen=True)
    class PlainRuntimeParam(_coercion.RuntimeParam):
        """Typer's runtime conversion of one parameter, plain values converted here."""

        convert: Convert

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                return self.convert(value, param, ctx)
            except Exception:  # Typer's own conversion answers, with its own message
                typer_own = _coercion.build_runtime_param(param.type_descriptor)
                return typer_own._coerce_value(value, param=param, ctx=ctx)


def install(command: Any) -> None:
    """Give each plain parameter of `command` (its `--help` included, and its subcommands
    when they are built: not the lazy table of the root) this conversion."""
    commands = getattr(command, "commands", None)
    if type(commands) is dict:
        for sub in commands.values():
            install(sub)
    if _coercion is None:
        return
    for param in command.params:
        _plain(param)
    help_option = command.get_help_option  # made at the first parse, then kept by click

    def get_help_option(ctx: Any) -> Any:
        option = help_option(ctx)
        if option is not None:
            _plain(option)
        return option
    command.get_help_option = get_help_option


def _plain(param: Any) -> None:
    descriptor = getattr(param, "type_descriptor", None)
    if (descriptor is None or getattr(param, "_runtime_param", 0) is not None
            or descriptor.file_annotation is not None):
        return
    convert = converter(descriptor.annotation, descriptor.parameter_info)
    if convert is not None:
        param._runtime_param = PlainRuntimeParam(
            parameter_info=descriptor.parameter_info, annotation=descriptor.annotation,
            convert=convert)
