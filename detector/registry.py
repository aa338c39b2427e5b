"""Registries that map config ``type`` names to classes, and ``build`` from a config dict."""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import is_dataclass
from typing import Any

from detector.errors import ConfigError


class Registry:
    """A named table of classes (or factories) that configs refer to by ``type``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a class under ``name`` (its ``__name__`` by default)."""

        def decorate(obj: Callable[..., Any]) -> Callable[..., Any]:
            key = name or obj.__name__
            if key in self._entries and self._entries[key] is not obj:
                raise KeyError(f"{self.name} registry already has an entry named '{key}'")
            self._entries[key] = obj
            return obj

        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, path: str = "type") -> Callable[..., Any]:
        """The entry called ``name``; an unknown name raises ConfigError with close matches."""
        if not isinstance(name, str):
            raise ConfigError(f"{path}: expected a {self.name} type name (a string), got {name!r}")
        if name in self._entries:
            return self._entries[name]
        close = difflib.get_close_matches(str(name), self.names(), n=3, cutoff=0.4)
        if close:
            hint = f"did you mean {', '.join(repr(c) for c in close)}?"
        else:
            hint = "registered: " + ", ".join(self.names())
        raise ConfigError(f"{path}: unknown {self.name} type '{name}'; {hint}")

    def check(self, cfg: Mapping[str, Any], path: str | None = None, **defaults: Any) -> None:
        """Check ``cfg`` as :meth:`build` would, without building: ConfigError naming the path."""
        self._target_and_arguments(cfg, path or self.name.lower(), defaults)

    def _target_and_arguments(
        self, cfg: Mapping[str, Any], path: str, defaults: Mapping[str, Any]
    ) -> tuple[Callable[..., Any], dict[str, Any]]:
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{path}: expected a mapping with a 'type' key, got {type(cfg).__name__}")
        if "type" not in cfg:
            raise ConfigError(f"{path}.type: missing; expected one of {', '.join(self.names())}")
        kwargs = {**defaults, **{k: v for k, v in cfg.items() if k != "type"}}
        target = self.get(cfg["type"], f"{path}.type")
        check_arguments(target, kwargs, path)
        return target, kwargs

    def build(self, cfg: Mapping[str, Any], path: str | None = None, **defaults: Any) -> Any:
        """Instantiate ``cfg['type']`` with the other keys of ``cfg`` as keyword arguments.

        ``path`` is the dotted config location used in error messages (``model.neck``);
        ``defaults`` fill arguments the config does not give. Unknown or missing arguments
        raise ConfigError naming ``path.argument`` and the class.
        """
        path = path or self.name.lower()
        target, kwargs = self._target_and_arguments(cfg, path, defaults)
        try:
            return target(**kwargs)
        except ConfigError:
            raise
        except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
            # What the constructor (or torch below it) refused, as one line naming the config path.
            first = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"{path}: {cfg['type']} cannot be built from these settings: {first}") from None


def check_arguments(target: Callable[..., Any], kwargs: Mapping[str, Any], path: str) -> None:
    """Raise ConfigError when ``kwargs`` do not fit ``target``'s signature."""
    signature = inspect.signature(target)
    params = signature.parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    cls_name = getattr(target, "__name__", repr(target))
    if not accepts_any:
        for key in kwargs:
            if key not in named:
                close = difflib.get_close_matches(key, named, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"accepted: {', '.join(named)}"
                raise ConfigError(f"{path}.{key}: {cls_name} has no argument '{key}'; {hint}")
    for name, p in params.items():
        required = p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        if required and name not in kwargs:
            raise ConfigError(f"{path}.{name}: missing, required by {cls_name}")
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # hints that do not resolve are not checked  # noqa: BLE001
        hints = {}
    for key, value in kwargs.items():
        expected = hints.get(key)
        if expected is not None and not matches_type(value, expected):
            raise ConfigError(f"{path}.{key}: {value!r}; expected {describe_type(expected)} ({cls_name})")


_SIMPLE = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def matches_type(value: Any, hint: Any) -> bool:
    """Whether a config value fits an annotation: int, float (an int fits), bool, str, None,
    unions, lists and tuples of those, mappings (``dict``, ``Mapping``, a dataclass section);
    True for annotations this does not understand."""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (dict, collections.abc.Mapping) or origin in (dict, collections.abc.Mapping) or is_dataclass(hint):
        return isinstance(value, collections.abc.Mapping)
    if hint in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, list | tuple):
            return False
        if not args:
            return True
        if origin is tuple and ... not in args:
            return len(value) == len(args) and all(matches_type(v, a) for v, a in zip(value, args, strict=True))
        return all(matches_type(v, args[0]) for v in value)
    return True


def describe_type(hint: Any) -> str:
    """An annotation in words for error messages: ``an integer or null``, ``a list of numbers``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args)
    if hint is type(None):
        return "null"
    if hint in _SIMPLE:
        return _SIMPLE[hint]
    if hint in (dict, collections.abc.Mapping) or origin in (dict, collections.abc.Mapping):
        return "a mapping"
    if is_dataclass(hint):
        return "a mapping of settings"
    if origin is tuple and args and ... not in args:
        return f"a list of {len(args)} {describe_type(args[0]).removeprefix('an ').removeprefix('a ')}s"
    if args:
        return f"a list of {describe_type(args[0]).removeprefix('an ').removeprefix('a ')}s"
    return getattr(hint, "__name__", str(hint))


BACKBONES = Registry("BACKBONES")
NECKS = Registry("NECKS")
HEADS = Registry("HEADS")
DETECTORS = Registry("DETECTORS")
ASSIGNERS = Registry("ASSIGNERS")
LOSSES = Registry("LOSSES")
DATASETS = Registry("DATASETS")
TRANSFORMS = Registry("TRANSFORMS")
TRACKERS = Registry("TRACKERS")
HOOKS = Registry("HOOKS")
#: 3x3 conv blocks of the CSP bottlenecks, by the name of the ``block`` setting (``conv``, ``repvgg``, ...).
BLOCKS = Registry("BLOCKS")
#: Knowledge-distillation losses (``distill.losses``): feature imitation and output distillation.
DISTILL_LOSSES = Registry("DISTILL_LOSSES")
