"""Checking a JSON file's contents against a small declarative schema, once, before anything uses them.

Every config file a model carries (config.json of each component, the scheduler's config,
a safetensors index, our quantized manifest) is read with `read_json` and checked with
`check` before a value is used, so a hand-edited or corrupt file ends in one line that
names the file and the field, never in a ZeroDivisionError deep inside a model:

    check(raw, {"num_layers": Field(int, 1, 10_000), "act": Field(str, required=False)}, "T5 config")

Light on purpose: no MLX import.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import FluxError


class ConfigError(FluxError, ValueError):
    """A config file (or a field of it) that is unreadable, of the wrong type or out of range."""


@dataclass(frozen=True)
class Field:
    """One field: its type (int, float, bool, str, list, dict), range, and whether it must be there.

    For a list, `item` is the type of its elements and min/max bound each element (numbers)."""

    type: type
    min: float | None = None
    max: float | None = None
    required: bool = True
    item: type | None = None


def check(config: object, fields: Mapping[str, Field], where: str,
          error: type[FluxError] = ConfigError) -> Mapping[str, Any]:
    """`config`, without its null values, if it is a JSON object whose `fields` have the
    declared types and ranges.

    Unknown keys are allowed (configs carry many we do not read); a field that is absent or
    null is allowed unless required, and null means absent: the result leaves it out, so a
    reader's defaults apply. Raises `error` naming `where` and the field.
    """
    try:
        return _check(config, fields, where)
    except ConfigError as e:
        if error is ConfigError:
            raise
        raise error(str(e)) from None


def _check(config: object, fields: Mapping[str, Field], where: str) -> Mapping[str, Any]:
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where} is not a JSON object (it is a {_json_type(config)})")
    for name, field in fields.items():
        value = config.get(name)
        if value is None:
            if field.required:
                raise ConfigError(f"{where} has no {name!r}" if name not in config else f"{where}: {name} is null")
            continue
        if field.type is list:
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{where}: {name} must be a list, not {_json_type(value)}")
            for item in value:
                _check_value(item, field.item or object, field, f"{where}: an item of {name}")
        else:
            _check_value(value, field.type, field, f"{where}: {name}")
    return {key: value for key, value in config.items() if value is not None}


def _check_value(value: Any, kind: type, field: Field, what: str) -> None:
    if kind is object:
        return
    if not _is(value, kind):
        raise ConfigError(f"{what} must be {_NAMES.get(kind, kind.__name__)}, not {_json_type(value)} {_short(value)}")
    if kind in (int, float):
        if not math.isfinite(value):
            raise ConfigError(f"{what} must be a finite number, not {value}")
        if field.min is not None and value < field.min:
            raise ConfigError(f"{what} must be at least {field.min:g}, not {_short(value)}")
        if field.max is not None and value > field.max:
            raise ConfigError(f"{what} must be at most {field.max:g}, not {_short(value)}")


def _is(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind is dict:
        return isinstance(value, Mapping)
    return isinstance(value, kind)


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a JSON object"}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, numbers.Integral):
        return "integer"
    if isinstance(value, numbers.Real):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return "null" if value is None else type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_json(path: str | Path, what: str | None = None, error: type[FluxError] = ConfigError) -> Any:
    """The parsed JSON of `path`; `error` (one line naming the file) when it is missing or unreadable:
    not UTF-8, not JSON, nested too deep, or an integer too long to convert."""
    path = Path(path)
    what = what or path.name
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise error(f"missing {what}: {path}") from None
    except UnicodeDecodeError:
        raise error(f"corrupt {what} (not UTF-8 text): {path}") from None
    except OSError as e:
        raise error(f"cannot read {what} ({e.strerror or e}): {path}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"corrupt {what} ({e.msg}, line {e.lineno}): {path}") from None
    except RecursionError:
        raise error(f"corrupt {what} (nested too deeply): {path}") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise error(f"corrupt {what} ({e}): {path}") from None
