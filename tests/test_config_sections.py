"""The declared config sections: every shipped config validates, an unknown key at any depth of
any shipped config is refused naming its dotted path, every key has a description, and the
full config a run records loads back to itself."""

import dataclasses

import pytest
import yaml

from detector.config import PACKAGE_CONFIGS, dump_config, load_config, packaged_configs
from detector.config_sections import KNOWN_SECTIONS, RunConfig, parse_config
from detector.errors import ConfigError
from detector.schema import describe_keys

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

SHIPPED = sorted(str(p.relative_to(PACKAGE_CONFIGS).with_suffix("")) for p in PACKAGE_CONFIGS.rglob("*.yaml"))


def test_packaged_names():
    assert {"yolox_s", "yolox_nano_shapes", "yolov5_s_style"} <= set(packaged_configs())
    assert "_base_/models/yolox_s" in SHIPPED and len(SHIPPED) >= 17


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_validates_and_round_trips(name, tmp_path):
    cfg = load_config(name)
    assert tuple(cfg) == KNOWN_SECTIONS
    assert parse_config(cfg) == parse_config(load_config(PACKAGE_CONFIGS / f"{name}.yaml"))
    # The full config alone repeats the run: dumped and loaded again it is the same.
    assert load_config(dump_config(cfg, tmp_path / "config.yaml")) == cfg


def test_a_name_that_is_neither_file_nor_packaged():
    with pytest.raises(ConfigError, match=r"^yolox_q: no such config file or packaged config; packaged: .*yolox_s"):
        load_config("yolox_q")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("../yolox_s")  # names stay inside the package's configs


def test_typo_in_override_names_the_closest_key():
    with pytest.raises(ConfigError) as err:
        load_config("yolox_nano_shapes", ["train.epoch=3"])
    message = str(err.value)
    assert message.endswith("train.epoch: unknown key; did you mean 'train.epochs'?") and "\n" not in message
    with pytest.raises(ConfigError, match=r"optimizer\.lr: 'fast'; expected a number$"):
        load_config("yolox_nano_shapes", ["optimizer.lr=fast"])
    with pytest.raises(ConfigError, match=r"train\.ema\.tua: unknown key; did you mean 'train\.ema\.tau'\?$"):
        load_config("yolox_nano_shapes", ["train.ema.tua=3"])


def test_every_key_has_a_one_line_description():
    keys = list(describe_keys(RunConfig))
    assert len(keys) > 60
    for path, kind, _, text in keys:
        assert text.strip() and "\n" not in text, path
        assert kind, path
    # Every section the code reads is declared: dataclass sections with their own keys.
    assert {f.name for f in dataclasses.fields(RunConfig)} == {
        "model", "data", "train", "optimizer", "scheduler", "eval", "track", "distill", "qat",
    }  # fmt: skip


def _mapping_paths(node, path=""):
    """Dotted paths of every mapping inside ``node`` (list items as ``[i]``)."""
    if isinstance(node, dict):
        yield path
        for key, value in node.items():
            yield from _mapping_paths(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _mapping_paths(value, f"{path}[{i}]")


def _node(cfg, path):
    node = cfg
    for part in path.replace("[", ".[").split(".") if path else []:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


FULL = {name: load_config(name) for name in SHIPPED}
PLACES = [(name, path) for name in SHIPPED for path in _mapping_paths(FULL[name])]


@hypothesis.settings(max_examples=100, deadline=None, derandomize=True)
@hypothesis.given(place=st.sampled_from(PLACES), key=st.from_regex(r"q[a-z_]{0,10}", fullmatch=True))
def test_an_unknown_key_anywhere_in_a_shipped_config_is_refused(tmp_path_factory, place, key):
    name, path = place
    cfg = yaml.safe_load(yaml.safe_dump(FULL[name]))
    _node(cfg, path)[key] = 1
    file = tmp_path_factory.mktemp("cfg") / "config.yaml"
    file.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as err:
        load_config(file)
    message = str(err.value)
    dotted = f"{path}.{key}" if path else key
    assert "\n" not in message
    if path:
        assert f": {dotted}: " in message, message
    else:
        assert f"unknown top-level section '{key}'" in message, message


FULL_RANGE = ["track.full_range.below=0.5", "track.full_range.tracker.high_threshold=0.25",
              "track.full_range.tracker.new_track_threshold=0.25"]  # fmt: skip


def test_full_range_tracker_settings_apply_to_detections_that_score_under_below():
    track = parse_config(load_config("_base_/trackers/bytetrack", FULL_RANGE)).track
    keys = ("high_threshold", "new_track_threshold")
    thresholds = lambda floor: [track.tracker_settings(floor)[k] for k in keys]  # noqa: E731
    own = [track.tracker[k] for k in keys]
    assert own != [0.25, 0.25]
    # A detector at its 0.1 threshold: the full range. A file cut at 0.5, or scores on their own
    # scale: the tracker's own settings.
    assert thresholds(0.1) == [0.25, 0.25]
    assert thresholds(0.5) == own and thresholds(None) == own
    assert track.tracker_settings(0.1)["low_threshold"] == track.tracker["low_threshold"]
    plain = parse_config(load_config("_base_/trackers/bytetrack")).track
    assert plain.full_range is None and plain.tracker_settings(0.1) == plain.tracker


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("track.full_range.tracker.high_treshold=0.2",
         r"full_range\.tracker\.high_treshold: ByteTracker has no argument 'high_treshold'; did you mean"),
        ("track.full_range.below=2", r"track\.full_range\.below: 2\.0; expected a number in \[0, 1\]$"),
        ("track.full_range.tracker.type=OCSortTracker",
         r"track\.full_range\.tracker\.type: set; expected settings of track\.tracker's type only$"),
        ("track.full_range.belw=0.3",
         r"track\.full_range\.belw: unknown key; did you mean 'track\.full_range\.below'\?$"),
    ],
)  # fmt: skip
def test_full_range_settings_are_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(load_config("_base_/trackers/bytetrack", [*FULL_RANGE, override]))
