"""The OpenAPI schema of `experiment` and `overrides`, generated from ascl's config dataclasses: every
field with its type, default, bounds, choices and description, written once (in ascl.config) and
shown in /docs, so users and fuzzers see what can be set. Validation itself stays in ascl.config,
whose errors name the field and suggest the nearest valid name."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, get_args, get_origin

from ascl.config import ExperimentConfig
from ascl.config_fields import field_rules

_SCALARS = {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"}}
_BOUND_KEYS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum"}


@functools.cache
def experiment_schema() -> dict[str, Any]:
    """A full ExperimentConfig; every section and field optional (defaults fill the rest)."""
    return _section(ExperimentConfig)


@functools.cache
def overrides_schema() -> dict[str, Any]:
    """Dotted paths ('train.epochs') to values, each path with its field's schema."""
    return {
        "type": "object",
        "description": 'Dotted paths to values, applied after the preset or experiment, e.g. {"train.epochs": 3}.',
        "properties": dict(_leaves(ExperimentConfig, "")),
        "additionalProperties": False,
    }


def _section(cls: type) -> dict[str, Any]:
    properties = {}
    for rule in field_rules(cls):
        if _is_section(rule.hint):
            properties[rule.name] = _section(rule.hint)
        else:
            properties[rule.name] = _leaf(rule)
    return {
        "type": "object",
        "title": cls.__name__,
        "description": (cls.__doc__ or "").strip().split("\n")[0],
        "properties": properties,
        "additionalProperties": False,
    }


def _leaves(cls: type, prefix: str) -> typing.Iterator[tuple[str, dict[str, Any]]]:
    for rule in field_rules(cls):
        if _is_section(rule.hint):
            yield from _leaves(rule.hint, f"{prefix}{rule.name}.")
        else:
            yield f"{prefix}{rule.name}", _leaf(rule)


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _leaf(rule: Any) -> dict[str, Any]:
    bounds = {_BOUND_KEYS[key]: value for key, value in rule.bounds.items()}
    schema = _type(rule.hint, rule.choices, bounds)
    schema["description"] = rule.doc
    if rule.default is not dataclasses.MISSING:
        schema["default"] = list(rule.default) if isinstance(rule.default, tuple) else rule.default
    return schema


def _type(hint: Any, choices: tuple[str, ...] | None, bounds: dict[str, float]) -> dict[str, Any]:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return {"anyOf": [_type(inner, choices, bounds), {"type": "null"}]}
    if choices is not None:
        return {"type": "string", "enum": list(choices)}
    if origin is tuple:
        return {"type": "array", "items": _type(args[0], None, bounds), "maxItems": 64}
    return {**_SCALARS[hint], **(bounds if hint in (int, float) else {})}
