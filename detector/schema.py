"""Typed config sections: each key declared once with its type, default and description.

The machinery of config sections (the sections themselves: ``detector.config_sections``).

A section is a dataclass whose fields are declared with :func:`setting`. :func:`parse_section`
turns a mapping into that dataclass: an unknown key (with the closest known one), a value of the
wrong type or outside a field's ``choices`` raises ``ConfigError`` naming the dotted path, e.g.
``train.epoch: unknown key; did you mean 'train.epochs'?``. Parts built through a registry
(``model``, ``data.train``, ``track.tracker``, the ``data.augment`` items) are plain mappings
here: the registries check them against their constructors' signatures (:func:`check_parts`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from detector.errors import ConfigError
from detector.registry import describe_type, matches_type

_HELP = "help"
_CHOICES = "choices"


def setting(default: Any, help: str, *, choices: tuple[Any, ...] | None = None) -> Any:
    """Declare a config key: its ``default``, a one-line ``help`` and optional allowed ``choices``."""
    metadata: dict[str, Any] = {_HELP: help}
    if choices is not None:
        metadata[_CHOICES] = tuple(choices)
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown_key(where: str, key: str, known: list[str], prefix: str) -> ConfigError:
    close = difflib.get_close_matches(str(key), known, n=1)
    if close:
        return ConfigError(f"{where}: unknown key; did you mean '{prefix}{close[0]}'?")
    return ConfigError(f"{where}: unknown key; known keys: {', '.join(known)}")


def parse_section(cls: type, value: Any, path: str) -> Any:
    """The ``cls`` dataclass from the mapping ``value`` (``None``: all defaults).

    ``path`` is the section's dotted location (``"train"``, ``"data.mix"``; ``""`` for the top
    level). After construction a section's optional ``check(path)`` method checks ranges.
    """
    if isinstance(value, cls):
        return value
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(value).__name__} {value!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    prefix = f"{path}." if path else ""
    values: dict[str, Any] = {}
    for key, raw in value.items():
        where = f"{prefix}{key}"
        if key not in fields:
            raise _unknown_key(where, str(key), list(fields), prefix)
        values[key] = parse_value(raw, hints[key], where, fields[key].metadata.get(_CHOICES))
    section = cls(**values)
    check = getattr(section, "check", None)
    if check is not None:
        check(path)
    return section


def parse_value(raw: Any, hint: Any, where: str, choices: tuple[Any, ...] | None = None) -> Any:
    """``raw`` checked against the annotation ``hint`` and converted (an int where a float is
    declared becomes a float, a list where a tuple is declared a tuple, a mapping where a section
    is declared that section)."""
    if choices is not None and raw not in choices:
        raise ConfigError(f"{where}: {raw!r}; expected one of {', '.join(repr(c) for c in choices)}")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        for arg in args:
            if dataclasses.is_dataclass(arg):
                if isinstance(raw, Mapping):
                    return parse_section(arg, raw, where)
            elif arg is not type(None) and matches_type(raw, arg):
                return parse_value(raw, arg, where)
        raise ConfigError(f"{where}: {raw!r}; expected {describe_type(hint)}")
    if dataclasses.is_dataclass(hint):
        return parse_section(hint, raw, where)
    if not matches_type(raw, hint):
        raise ConfigError(f"{where}: {raw!r}; expected {describe_type(hint)}")
    if hint is float:
        return float(raw)
    if origin is tuple:
        item = args[0] if args else Any
        return tuple(parse_value(v, item, f"{where}[{i}]") for i, v in enumerate(raw))
    if origin is list:
        return (
            [copy.deepcopy(v) for v in raw]
            if not args
            else [parse_value(v, args[0], f"{where}[{i}]") for i, v in enumerate(raw)]
        )
    if origin is dict or hint is dict:
        return copy.deepcopy(dict(raw))
    return copy.deepcopy(raw)


def to_plain(section: Any) -> Any:
    """A section (or any value of one) as plain YAML-safe data: dicts, lists, scalars."""
    if dataclasses.is_dataclass(section) and not isinstance(section, type):
        return {f.name: to_plain(getattr(section, f.name)) for f in dataclasses.fields(section) if f.init}
    if isinstance(section, Mapping):
        return {k: to_plain(v) for k, v in section.items()}
    if isinstance(section, list | tuple):
        return [to_plain(v) for v in section]
    return section


def describe_keys(cls: type, prefix: str = "") -> Iterator[tuple[str, str, Any, str]]:
    """Every key of the section ``cls``, nested sections expanded: ``(dotted path, type,
    default, description)``."""
    hints = _hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path, hint = f"{prefix}{f.name}", hints[f.name]
        section = _section_type(hint)
        if section is not None:
            yield path, describe_type(hint), None, f.metadata.get(_HELP, "")
            yield from describe_keys(section, f"{path}.")
            continue
        yield path, describe_type(hint), to_plain(getattr(defaults, f.name)), f.metadata.get(_HELP, "")


def _section_type(hint: Any) -> type | None:
    """The dataclass a field holds (alone or in a union), if any."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def check_positive(path: str, **values: float | int | None) -> None:
    for key, value in values.items():
        if value is not None and value <= 0:
            raise ConfigError(f"{path}.{key}: {value!r}; expected a positive number")


def check_non_negative(path: str, **values: float | int | None) -> None:
    for key, value in values.items():
        if value is not None and value < 0:
            raise ConfigError(f"{path}.{key}: {value!r}; expected a number >= 0")


def check_fraction(path: str, **values: float | None) -> None:
    for key, value in values.items():
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{path}.{key}: {value!r}; expected a number in [0, 1]")
