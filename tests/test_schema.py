"""detector.schema: typed sections from mappings, with one-line errors naming the dotted path."""

import dataclasses

import pytest

from detector.errors import ConfigError
from detector.schema import describe_keys, parse_section, setting, to_plain


@dataclasses.dataclass
class Inner:
    decay: float = setting(0.5, "a number")
    sizes: tuple[float, float] = setting((1.0, 2.0), "a pair")

    def check(self, path):
        if not 0 < self.decay < 1:
            raise ConfigError(f"{path}.decay: {self.decay!r}; expected a number in (0, 1)")


@dataclasses.dataclass
class Outer:
    epochs: int = setting(10, "an integer")
    name: str | None = setting(None, "a name or null")
    kind: str = setting("a", "one of two", choices=("a", "b"))
    inner: Inner | bool = setting(Inner(), "a section or a switch")
    steps: list[dict] | None = setting(None, "mappings")
    size: int | list[int] = setting(8, "one size or a list")


def test_defaults_and_conversions():
    out = parse_section(Outer, {"inner": {"decay": 0.25, "sizes": [3, 4]}, "size": [2, 3]}, "top")
    assert out.epochs == 10 and out.name is None and out.kind == "a" and out.size == [2, 3]
    assert out.inner == Inner(decay=0.25, sizes=(3.0, 4.0)) and isinstance(out.inner.sizes[0], float)
    assert parse_section(Outer, None, "top") == Outer()
    assert parse_section(Outer, {"inner": False}, "top").inner is False


def test_unknown_key_names_the_path_and_the_closest_key():
    with pytest.raises(ConfigError) as err:
        parse_section(Outer, {"epoch": 3}, "train")
    assert str(err.value) == "train.epoch: unknown key; did you mean 'train.epochs'?"
    with pytest.raises(ConfigError) as err:
        parse_section(Outer, {"inner": {"decy": 0.1}}, "train")
    assert str(err.value) == "train.inner.decy: unknown key; did you mean 'train.inner.decay'?"
    with pytest.raises(ConfigError, match=r"^train\.zzzz: unknown key; known keys: epochs, name, kind"):
        parse_section(Outer, {"zzzz": 1}, "train")
    with pytest.raises(ConfigError) as err:
        parse_section(Outer, {"epohcs": 1}, "")  # the top level: no prefix
    assert str(err.value) == "epohcs: unknown key; did you mean 'epochs'?"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": "ten"}, "top.epochs: 'ten'; expected an integer"),
        ({"epochs": 2.5}, "top.epochs: 2.5; expected an integer"),
        ({"epochs": True}, "top.epochs: True; expected an integer"),
        ({"name": 3}, "top.name: 3; expected a string or null"),
        ({"kind": "c"}, "top.kind: 'c'; expected one of 'a', 'b'"),
        ({"inner": 1}, "top.inner: 1; expected a mapping of settings or true or false"),
        ({"inner": {"sizes": [1, 2, 3]}}, "top.inner.sizes: [1, 2, 3]; expected a list of 2 numbers"),
        ({"inner": {"decay": 2}}, "top.inner.decay: 2.0; expected a number in (0, 1)"),
        ({"steps": [1]}, "top.steps: [1]; expected a list of mappings or null"),
        ({"size": "big"}, "top.size: 'big'; expected an integer or a list of integers"),
        ([1, 2], "top: expected a mapping of settings, got list [1, 2]"),
    ],
)
def test_wrong_values_name_the_key_and_the_expected_type(values, message):
    with pytest.raises(ConfigError) as err:
        parse_section(Outer, values, "top")
    assert str(err.value) == message


def test_to_plain_round_trips_and_describe_lists_every_key():
    out = parse_section(Outer, {"inner": {"sizes": [3, 4]}, "steps": [{"type": "X"}]}, "top")
    plain = to_plain(out)
    assert plain["inner"] == {"decay": 0.5, "sizes": [3.0, 4.0]} and plain["steps"] == [{"type": "X"}]
    assert parse_section(Outer, plain, "top") == out
    keys = {path: (kind, default, text) for path, kind, default, text in describe_keys(Outer)}
    assert list(keys) == ["epochs", "name", "kind", "inner", "inner.decay", "inner.sizes", "steps", "size"]
    assert keys["inner.sizes"] == ("a list of 2 numbers", [1.0, 2.0], "a pair")
    assert keys["epochs"] == ("an integer", 10, "an integer")
