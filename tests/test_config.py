import textwrap

import pytest
import yaml

from detector.config import dump_config, load_config, merge_config, parse_overrides
from detector.errors import ConfigError


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tree(tmp_path):
    write(
        tmp_path / "base_model.yaml",
        """
        model:
          backbone: {type: CSPDarknet, depth: 0.33, width: 0.25}
          neck: {type: PAFPN, depth: 0.33}
          head: {type: YOLOXHead, num_classes: 80, strides: [8, 16, 32]}
        train: {epochs: 300, seed: 1}
        """,
    )
    write(tmp_path / "base_train.yaml", "train: {epochs: 100, name: base}\n")
    (tmp_path / "sub").mkdir()
    write(
        tmp_path / "sub" / "child.yaml",
        """
        _base_: [../base_model.yaml, ../base_train.yaml]
        model:
          backbone: {width: 0.5}
          head: {num_classes: 3}
        """,
    )
    return tmp_path


def test_base_list_deep_merge_later_wins(tree):
    cfg = load_config(tree / "sub" / "child.yaml")
    assert cfg["model"]["backbone"] == {"type": "CSPDarknet", "depth": 0.33, "width": 0.5}
    assert cfg["model"]["head"] == {"type": "YOLOXHead", "num_classes": 3, "strides": [8, 16, 32]}
    assert (cfg["train"]["epochs"], cfg["train"]["seed"], cfg["train"]["name"]) == (100, 1, "base")


def test_single_base_and_delete_replaces_mapping(tree):
    write(
        tree / "replace.yaml",
        """
        _base_: base_model.yaml
        model:
          backbone: {_delete_: true, type: Darknet53}
        """,
    )
    cfg = load_config(tree / "replace.yaml")
    assert cfg["model"]["backbone"] == {"type": "Darknet53"}
    assert cfg["model"]["head"]["num_classes"] == 80


def test_lists_replace_rather_than_merge():
    assert merge_config({"a": [1, 2, 3]}, {"a": [4]}) == {"a": [4]}


def test_overrides_parse_yaml_scalars(tree):
    cfg = load_config(
        tree / "sub" / "child.yaml",
        [
            "model.head.num_classes=6",
            "train.epochs=10",
            "train.amp=true",
            "model.head.strides=[16, 32, 64]",
            "train.name=run1",
            "optimizer.lr=1e-3",
            "model.head.strides.0=4",
        ],
    )
    assert cfg["model"]["head"]["num_classes"] == 6
    assert cfg["train"]["epochs"] == 10 and cfg["train"]["amp"] is True and cfg["train"]["name"] == "run1"
    assert cfg["optimizer"]["lr"] == pytest.approx(1e-3)
    assert cfg["model"]["head"]["strides"] == [4, 32, 64]


def test_override_dict_form_and_new_keys(tree):
    cfg = load_config(tree / "base_model.yaml", {"model.neck.depthwise": True, "model.neck.act": "relu"})
    assert cfg["model"]["neck"] == {"type": "PAFPN", "depth": 0.33, "depthwise": True, "act": "relu"}


def test_override_errors():
    with pytest.raises(ConfigError, match=r"^override 'model.head': expected KEY=VALUE"):
        parse_overrides(["model.head"])
    with pytest.raises(ConfigError, match=r"'train.epochs' is a int, not a mapping"):
        from detector.config import set_by_path

        set_by_path({"train": {"epochs": 3}}, "train.epochs.x", 1)


def test_unknown_top_level_section_suggests(tree):
    write(tree / "typo.yaml", "modle: {}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tree / "typo.yaml")
    assert str(err.value) == f"{tree / 'typo.yaml'}: unknown top-level section 'modle'; did you mean 'model'?"


def test_missing_file_bad_yaml_and_cycle(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    write(tmp_path / "bad.yaml", "model: {a: [1, 2}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML \(line 1, column \d+\)"):
        load_config(tmp_path / "bad.yaml")
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="inheritance cycle"):
        load_config(tmp_path / "a.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    write(tmp_path / "evil.yaml", "model: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "evil.yaml")


def test_dump_round_trip(tree, tmp_path):
    cfg = load_config(tree / "sub" / "child.yaml", ["train.epochs=7"])
    out = dump_config(cfg, tmp_path / "run" / "config.yaml")
    assert yaml.safe_load(out.read_text()) == cfg
    assert load_config(out) == cfg
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]  # no temp file left behind


def test_bases_outside_the_config_tree_or_not_yaml_are_refused(tmp_path):
    (tmp_path / "secret.yaml").write_text("model: {}\n")
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    write(inner / "x.yaml", "_base_: ../../secret.yaml\n")
    with pytest.raises(ConfigError, match=r"_base_ .*secret\.yaml is outside .* copy the base beside the config"):
        load_config(inner / "x.yaml")
    write(inner / "y.yaml", "_base_: /etc/passwd\n")
    with pytest.raises(ConfigError, match="expected a .yaml or .yml file"):
        load_config(inner / "y.yaml")
    write(inner / "z.yaml", "_base_: ../sibling.yaml\n")  # the ../_base_ layout: one level up is fine
    write(inner.parent / "sibling.yaml", "train: {epochs: 3}\n")
    assert load_config(inner / "z.yaml")["train"]["epochs"] == 3
