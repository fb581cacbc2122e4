"""How config dataclasses declare and check their fields, and how they travel as JSON: `knob` (a
field with its description, bounds and choices), the rules read from those declarations (used by
validation here and by the API's OpenAPI schema), and conversion from and to JSON with errors that
name the dotted field path. Stdlib only, like ascl.config."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from ascl.errors import ConfigError
from ascl.registry import unknown_name_message


def fail(name: str, value: Any, problem: str) -> typing.NoReturn:
    raise ConfigError(name, f"{problem} (got {_shown(value)})")


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
    hints = get_type_hints(cls)
    rules = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        choices = tuple(str(a) for a in get_args(hint)) if get_origin(hint) is Literal else f.metadata.get("choices")
        kind = f.metadata.get("kind") or f.name.replace("_", " ")
        doc = f.metadata.get("doc") or (hint.__doc__ or "").split("\n")[0]
        rules.append(FieldRule(f.name, hint, f.default, doc, choices, kind, f.metadata.get("bounds", {})))
    return tuple(rules)


MAX_TEXT = 4096  # a config string's length (a path's limit on Linux)
# C0 (NUL, tab, newline, escape ...), DEL, C1, Unicode's line and paragraph separators and its bidi
# marks and controls (they break a line, or reorder what a terminal or a table shows), as a regex class
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
# lone surrogates (JSON's "\ud800" escapes) are no Unicode text: UTF-8 cannot encode them, so no file,
# database row or answer could hold one (a class of their own: a Rust regex, as pydantic's, has none)
SURROGATES = r"\ud800-\udfff"
CONTROL_CHARACTER = re.compile(f"[{CONTROL_CHARACTERS}{SURROGATES}]")


def check_fields(config: object) -> None:
    """Every field's choices and declared bounds; floats must be finite (JSON admits NaN and Infinity);
    strings are one printable line (they become names in a database, file names, log and table cells)."""
    for rule in field_rules(type(config)):  # type: ignore[arg-type]  # a config class is hashable
        value = getattr(config, rule.name)
        if rule.choices is not None:
            _choice(rule.name, value, rule.choices, rule.kind)
            continue
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if isinstance(item, str):
                if len(item) > MAX_TEXT or CONTROL_CHARACTER.search(item):
                    fail(rule.name, item[:100], f"must be one line of printable text, at most {MAX_TEXT} characters")
                continue
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
    cls: Any = type(value)  # hashable: its field names are cached
    names = _dataclass_fields(cls)
    if names is not None:
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if isinstance(value, tuple):
        return [to_jsonable(v) for v in value]
    return value


@functools.cache
def _dataclass_fields(cls: type) -> tuple[str, ...] | None:
    """A dataclass's field names, None for any other type (asked per value: cached per type)."""
    return tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None


def from_dict(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "spec", f"must be an object (got {_shown(data)})")
    converters = _converters_of(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in data.items():
        convert = converters.get(key)
        if convert is None:
            raise ConfigError(prefix + key, unknown_name_message("field", key, list(converters)))
        kwargs[key] = convert(raw, prefix + key)
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise error.within(prefix.rstrip(".")) if prefix else error from None


Converter = typing.Callable[[Any, str], Any]  # (a JSON value, its dotted path) -> the field's value


@functools.cache
def _converters_of(cls: type) -> dict[str, Converter]:
    """Each field's converter, in declaration order: the type hints are read once per class
    (resolving them costs ~0.1 ms a class, and walking them per value was most of a submission's
    config work)."""
    return {rule.name: _converter(rule.hint, rule.kind) for rule in field_rules(cls)}


@functools.cache
def _converter(hint: Any, kind: str) -> Converter:
    """Checks a JSON value against a field's type hint and converts lists to tuples; `kind` names
    the field's values in errors ('unknown norm ...')."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return lambda raw, path: from_dict(hint, raw, path + ".")
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        convert_inner = _converter(inner, kind)
        return lambda raw, path: None if raw is None else convert_inner(raw, path)
    if origin is Literal:
        names = [str(a) for a in args]

        def literal(raw: Any, path: str) -> Any:
            if raw not in args:
                raise ConfigError(path, unknown_name_message(kind, str(raw), names))
            return raw

        return literal
    if origin is tuple:
        convert_item = _converter(args[0], kind)

        def items(raw: Any, path: str) -> tuple[Any, ...]:
            if not isinstance(raw, list | tuple):
                raise ConfigError(path, f"must be a list (got {_shown(raw)})")
            return tuple(convert_item(item, path) for item in raw)

        return items
    return _scalar(hint)


def _scalar(hint: Any) -> Converter:
    if hint is bool:
        return _checked(lambda raw: isinstance(raw, bool), "must be true or false")
    if hint is int:
        return _checked(lambda raw: isinstance(raw, int) and not isinstance(raw, bool), "must be an integer")
    if hint is float:
        number = _checked(lambda raw: isinstance(raw, int | float) and not isinstance(raw, bool), "must be a number")
        return lambda raw, path: _finite(number(raw, path), path)
    if hint is str:
        return _checked(lambda raw: isinstance(raw, str), "must be a string")
    raise TypeError(f"unsupported config type {hint!r}")


def _checked(accepts: typing.Callable[[Any], bool], problem: str) -> Converter:
    def convert(raw: Any, path: str) -> Any:
        if not accepts(raw):
            raise ConfigError(path, f"{problem} (got {_shown(raw)})")
        return raw

    return convert


def _finite(number: Any, path: str) -> float:
    try:
        return float(number)
    except OverflowError:  # an integer past a float's range (JSON numbers have no bound)
        raise ConfigError(path, f"must be a number a float holds (got {_shown(number)})") from None


def _shown(raw: Any) -> str:
    """A refused value as an error shows it: bounded, whatever was sent."""
    text = repr(raw) if not isinstance(raw, int) or raw.bit_length() < 256 else f"an integer of {raw.bit_length()} bits"
    return text if len(text) <= 100 else text[:99] + "…"


def with_paths(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of a config with dotted-path values set. Only the sections a path enters are rebuilt
    from JSON and checked again; the others are kept as they are (frozen, checked when made), which
    makes an override of one field a fraction of a whole rebuild. The top level is checked again."""
    cls: Any = type(config)  # a config class (hashable: its converters are cached)
    data = {name: getattr(config, name) for name in _dataclass_fields(cls) or ()}
    touched = {path.split(".", 1)[0] for path in overrides} & data.keys()
    for name in touched:
        data[name] = to_jsonable(data[name])
    for path, value in overrides.items():
        set_path(data, path, value)
    converters = _converters_of(cls)
    kwargs = {name: converters[name](value, name) if name in touched else value for name, value in data.items()}
    return cls(**kwargs)


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *sections, leaf = path.split(".")
    node = data
    for i, section in enumerate(sections):
        child = node.get(section)
        if not isinstance(child, dict):
            where = ".".join(sections[: i + 1])
            if section in node:
                raise ConfigError(where, "is a field, not a config section")
            known = sorted(
                key for key, value in node.items() if isinstance(value, dict) or dataclasses.is_dataclass(value)
            )
            raise ConfigError(where, unknown_name_message("config section", section, known))
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
