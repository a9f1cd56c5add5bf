"""Frozen dataclass configs ↔ JSON-compatible dicts (configs are data, never pickled code)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from deltaplane.errors import InputError

T = TypeVar("T")


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; InputError naming the file when it cannot be read or parsed, or holds no object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"cannot read {path}: expected a JSON object, found {type(data).__name__} {str(data)[:40]}")
    return data


def to_dict(config: Any) -> dict[str, Any]:
    """A nested dataclass as plain dicts/lists (tuples become lists)."""
    return dataclasses.asdict(config)


def _mismatch(annotation: Any, value: Any) -> ValueError:
    literal = typing.get_origin(annotation) is typing.Literal
    expected = f"one of {typing.get_args(annotation)}" if literal else getattr(annotation, "__name__", annotation)
    return ValueError(f"expected {expected}, got {value!r}"[:200])


def _build(annotation: Any, value: Any) -> Any:
    """`value` as `annotation`; a value of the wrong JSON type raises ValueError (a damaged file must fail here, not as
    a TypeError deep inside the code that uses it)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            with contextlib.suppress(ValueError):
                return _build(option, value)
        raise _mismatch(annotation, value)
    if origin is typing.Literal:
        if value not in args:
            raise _mismatch(annotation, value)
        return value
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], item) for item in value)
        if len(args) != len(value):
            raise _mismatch(annotation, value)
        return tuple(_build(arg, item) for arg, item in zip(args, value, strict=True))
    if origin is list and isinstance(value, list):
        return [_build(args[0], item) for item in value] if args else value
    if origin is dict and isinstance(value, dict):
        return {key: _build(args[1], item) for key, item in value.items()} if args else value
    expected = (int, float) if annotation is float else origin or annotation  # JSON may write 2.0 as 2
    if isinstance(expected, type | tuple) and (not isinstance(value, expected)
                                               or isinstance(value, bool) and annotation is not bool):
        raise _mismatch(annotation, value)
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) frozen dataclass from `to_dict` output; unknown keys and values of the wrong type are a
    ValueError, missing keys default (a missing required one is a TypeError)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a {cls.__name__} object, got {data!r}"[:200])
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    built = {}
    for name, value in data.items():
        try:
            built[name] = _build(hints[name], value)
        except ValueError as exc:
            raise ValueError(f"{cls.__name__}.{name}: {exc}") from None
    return cls(**built)
