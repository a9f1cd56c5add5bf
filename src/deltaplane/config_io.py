"""Frozen dataclass configs ↔ JSON-compatible dicts (configs are data, never pickled code)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from deltaplane.errors import InputError

T = TypeVar("T")


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; InputError naming the file when it cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def to_dict(config: Any) -> dict[str, Any]:
    """A nested dataclass as plain dicts/lists (tuples become lists)."""
    return dataclasses.asdict(config)


def _build(annotation: Any, value: Any) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return from_dict(annotation, value)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            if option is type(None) and value is None:
                return None
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return from_dict(option, value)
        return value
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], item) for item in value)
        return tuple(_build(arg, item) for arg, item in zip(args, value, strict=True))
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) frozen dataclass from `to_dict` output; unknown keys are an error, missing keys default."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**{name: _build(hints[name], value) for name, value in data.items()})
