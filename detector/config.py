"""YAML configs: packaged names, ``_base_`` inheritance, dotted command-line overrides, validation, dumping.

A config is a plain nested ``dict``; ``load_config`` returns it complete, every key the schema
(``detector.config_sections``) declares filled in. A config is named by a path or, for the
configs shipped in the package (``detector/configs``), by name: ``load_config("yolox_s")``.
Inheritance rules:

* ``_base_: path.yaml`` or a list of paths (relative to the file); later bases override
  earlier ones and the file itself overrides all bases.
* mappings merge key by key; a mapping holding ``_delete_: true`` replaces the inherited
  mapping instead of merging into it; lists and scalars replace.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from detector.errors import ConfigError
from detector.schema import to_plain
from detector.utils.fileio import atomic_write

BASE_KEY = "_base_"
#: The package's own configs: named configs, and bases a config may always use.
PACKAGE_CONFIGS = Path(__file__).absolute().parent / "configs"
DELETE_KEY = "_delete_"


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python objects) that also reads ``1e-3`` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-3``); configs write learning
    rates as ``1e-3``, which it would otherwise load as a string.
    """


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def safe_load_yaml(text: str) -> Any:
    """Parse YAML text safely (plain data only; ``1e-3`` is a float)."""
    return yaml.load(text, Loader=_SafeLoader)  # noqa: S506  (a SafeLoader subclass)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = safe_load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def merge_config(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (``_delete_: true`` replaces a mapping)."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping):
            value = dict(value)
            replace = value.pop(DELETE_KEY, False)
            if not replace and isinstance(merged.get(key), Mapping):
                merged[key] = merge_config(merged[key], value)
            else:
                merged[key] = merge_config({}, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_base_location(base: Path, roots: tuple[Path, ...], source: Path) -> None:
    """A ``_base_`` must be a YAML file inside the folder tree above the top config (its folder
    and the one above, for the ``../_base_/`` layout) or the package's configs: a config from
    elsewhere cannot make the loader read arbitrary files."""
    if base.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{source}: _base_ {base}: expected a .yaml or .yml file")
    if not any(root in base.parents for root in roots):
        raise ConfigError(
            f"{source}: _base_ {base} is outside {roots[0]} and the package's configs {roots[1]}; "
            "copy the base beside the config"
        )


def _load_with_bases(path: Path, chain: tuple[Path, ...], roots: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = Path(os.path.normpath(path.absolute()))
    if not roots:
        roots = (path.parent.parent, Path(os.path.normpath(PACKAGE_CONFIGS)))
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{path}: _base_ inheritance cycle: {cycle}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for base in bases:
        # Lexically, without following links: where the config says, not where a link points.
        base_path = Path(os.path.normpath(path.parent / base))
        _check_base_location(base_path, roots, path)
        merged = merge_config(merged, _load_with_bases(base_path, (*chain, path), roots))
    return merge_config(merged, data)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``["a.b=1", "c=[1, 2]"]`` into ``{"a.b": 1, "c": [1, 2]}`` (values as YAML scalars)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. model.head.num_classes=6")
        try:
            overrides[key.strip()] = safe_load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value {raw!r} is not valid YAML") from None
    return overrides


def set_by_path(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``cfg[a][b][c] = value`` for ``dotted == "a.b.c"`` (list items by integer index)."""
    keys = dotted.split(".")
    node: Any = cfg
    for depth, key in enumerate(keys[:-1]):
        here = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(node, key, here)]
            continue
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, (dict, list)):
            raise ConfigError(f"override {dotted!r}: {here!r} is a {type(child).__name__}, not a mapping")
        node = child
    last = keys[-1]
    if isinstance(node, list):
        node[_list_index(node, last, dotted)] = value
    else:
        node[last] = value


def _list_index(node: list[Any], key: str, where: str) -> int:
    if not key.lstrip("-").isdigit() or not -len(node) <= int(key) < len(node):
        raise ConfigError(f"override: '{where}' needs an index in 0..{len(node) - 1}, got '{key}'")
    return int(key)


def packaged_configs() -> list[str]:
    """Names of the configs shipped in the package (``yolox_s``, ...; not the ``_base_`` parts)."""
    return sorted(p.stem for p in PACKAGE_CONFIGS.glob("*.yaml"))


def resolve_config_path(name: str | os.PathLike[str]) -> Path:
    """The file a config argument means: an existing path, else a packaged config of that name
    (``yolox_s``, ``yolox_s.yaml``, ``_base_/models/yolox_s``)."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = PACKAGE_CONFIGS / (path if path.suffix in (".yaml", ".yml") else path.with_name(path.name + ".yaml"))
    if not path.is_absolute() and ".." not in path.parts and packaged.is_file():
        return packaged
    if path.suffix in (".yaml", ".yml") or path.is_absolute() or len(path.parts) > 1:
        raise ConfigError(f"{name}: config file not found")
    raise ConfigError(f"{name}: no such config file or packaged config; packaged: {', '.join(packaged_configs())}")


def load_config(
    path: str | os.PathLike[str],
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
    check_parts: bool = True,
) -> dict[str, Any]:
    """Load a config (a path or a packaged name) with its bases, apply dotted overrides,
    check every key against the schema, and return the complete config as a plain dict.

    ``overrides`` is ``{"model.head.num_classes": 6}`` or ``["model.head.num_classes=6"]``; they
    go through the same checks. ``check_parts`` also checks the registry-built parts (the model,
    datasets, tracker) against their constructors, without building them or reading data.
    """
    from detector.config_sections import check_parts as check_registry_parts
    from detector.config_sections import parse_config

    path = resolve_config_path(path)
    cfg = _load_with_bases(path, ())
    source = str(path)
    if overrides:
        _named(source, parse_config, cfg)  # a mistake in the file is the file's, not the overrides'
        pairs = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
        for dotted, value in pairs.items():
            set_by_path(cfg, dotted, value)
    run = _named(f"{source} with overrides" if overrides else source, parse_config, cfg)
    if check_parts:
        _named(source, check_registry_parts, run)
    return to_plain(run)


def _named(source: str, check: Any, value: Any) -> Any:
    """``check(value)``, its ``ConfigError`` prefixed with ``source`` (the config file)."""
    try:
        return check(value)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def dump_config(cfg: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the resolved config as YAML, atomically (temp file + rename). Returns the path."""
    return atomic_write(path, lambda f: yaml.safe_dump(dict(cfg), f, sort_keys=False, default_flow_style=None))
