"""How config dataclasses declare and check their fields, and how they travel as JSON: `knob` (a
field with its description, bounds and choices), the rules read from those declarations (used by
validation here and by the API's OpenAPI schema), and conversion from and to JSON with errors that
name the dotted field path. Stdlib only, like ascl.config."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from ascl.errors import ConfigError
from ascl.registry import unknown_name_message


def fail(name: str, value: Any, problem: str) -> typing.NoReturn:
    raise ConfigError(name, f"{problem} (got {value!r})")


def knob(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] | None = None,
    kind: str | None = None,
) -> Any:
    """A config field with its description, numeric bounds and (for names) the valid choices: the one
    home of each, read by the validation below and by the API's OpenAPI schema (so /docs shows them).
    Literal-typed fields take their choices from the type; `kind` names the thing in errors."""
    bounds = {key: value for key, value in (("ge", ge), ("gt", gt), ("le", le)) if value is not None}
    return field(default=default, metadata={"doc": doc, "bounds": bounds, "choices": choices, "kind": kind})


@dataclass(frozen=True, slots=True)
class FieldRule:
    """What a field accepts, from its type and its knob: read by validation and by the API schema."""

    name: str
    hint: Any  # the resolved type
    default: Any  # dataclasses.MISSING for a section (built by its default factory)
    doc: str
    choices: tuple[str, ...] | None  # a Literal's values or the knob's choices
    kind: str  # how errors name the thing ('unknown model ...')
    bounds: dict[str, float]


@functools.cache
def field_rules(cls: type) -> tuple[FieldRule, ...]:
    hints, _ = _fields_of(cls)
    rules = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        choices = tuple(str(a) for a in get_args(hint)) if get_origin(hint) is Literal else f.metadata.get("choices")
        kind = f.metadata.get("kind") or f.name.replace("_", " ")
        doc = f.metadata.get("doc") or (hint.__doc__ or "").split("\n")[0]
        rules.append(FieldRule(f.name, hint, f.default, doc, choices, kind, f.metadata.get("bounds", {})))
    return tuple(rules)


def check_fields(config: object) -> None:
    """Every field's choices and declared bounds; floats must be finite (JSON admits NaN and Infinity)."""
    for rule in field_rules(type(config)):  # type: ignore[arg-type]  # a config class is hashable
        value = getattr(config, rule.name)
        if rule.choices is not None:
            _choice(rule.name, value, rule.choices, rule.kind)
            continue
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if isinstance(item, bool) or not isinstance(item, int | float):
                continue
            if isinstance(item, float) and not math.isfinite(item):
                fail(rule.name, value, "must be a finite number")
            bounds = rule.bounds
            if "ge" in bounds and not item >= bounds["ge"]:
                fail(rule.name, value, f"must be >= {bounds['ge']:g}")
            if "gt" in bounds and not item > bounds["gt"]:
                fail(rule.name, value, f"must be > {bounds['gt']:g}")
            if "le" in bounds and not item <= bounds["le"]:
                fail(rule.name, value, f"must be <= {bounds['le']:g}")


def _choice(name: str, value: str, options: tuple[str, ...], kind: str) -> None:
    if value not in options:
        raise ConfigError(name, unknown_name_message(kind, value, options))


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [to_jsonable(v) for v in value]
    return value


def from_dict(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "spec", f"must be an object (got {data!r})")
    hints, names = _fields_of(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in names:
            raise ConfigError(prefix + key, unknown_name_message("field", key, names))
        kwargs[key] = _coerce(hints[key], raw, prefix + key)
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise error.within(prefix.rstrip(".")) if prefix else error from None


@functools.cache
def _fields_of(cls: type) -> tuple[dict[str, Any], list[str]]:
    """Resolved field types and names of a config class (resolving hints costs ~0.1 ms a class)."""
    return get_type_hints(cls), [f.name for f in dataclasses.fields(cls)]


def _coerce(hint: Any, raw: Any, path: str) -> Any:
    """Check a JSON value against a field's type hint and convert lists to tuples."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, raw, path + ".")
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, raw, path)
    if origin is Literal:
        if raw not in args:
            raise ConfigError(path, unknown_name_message("value", str(raw), [str(a) for a in args]))
        return raw
    if origin is tuple:
        if not isinstance(raw, list | tuple):
            raise ConfigError(path, f"must be a list (got {raw!r})")
        return tuple(_coerce(args[0], item, path) for item in raw)
    return _scalar(hint, raw, path)


def _scalar(hint: Any, raw: Any, path: str) -> Any:
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(path, f"must be true or false (got {raw!r})")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(path, f"must be an integer (got {raw!r})")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(path, f"must be a number (got {raw!r})")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(path, f"must be a string (got {raw!r})")
        return raw
    raise TypeError(f"unsupported config type {hint!r} at {path}")


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *sections, leaf = path.split(".")
    node = data
    for i, section in enumerate(sections):
        child = node.get(section)
        if not isinstance(child, dict):
            raise ConfigError(".".join(sections[: i + 1]), "is not a config section")
        node = child
    if leaf not in node:
        where = ".".join(sections) or "experiment"
        raise ConfigError(path, unknown_name_message(f"field of {where}", leaf, sorted(node)))
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'train.epochs=3' → ('train.epochs', 3). Values are JSON when they parse, else strings."""
    path, sep, raw = text.partition("=")
    if not sep or not path:
        raise ConfigError("--set", f"expected key=value (got {text!r})")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return path.strip(), value
