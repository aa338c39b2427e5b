"""Fuzzed configs, MOT files and detections: whatever the input, the code answers with a result
or with its own one-line error (``ConfigError`` / ``ValueError`` / ``MotFormatError``), never
with an unrelated exception from deep inside. Derandomized, so that CI runs the examples that
passed here; new finds go in as ``@example``s."""

import math

import numpy as np
import pytest
import yaml

from detector import build_model, load_config
from detector.errors import ConfigError, MotFormatError
from detector.tracking.mot_io import read_mot
from detector.tracking.tracker import ByteTracker

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.text(max_size=12)
)
KEYS = st.sampled_from(["type", "depth", "width", "num_classes", "in_channels", "act", "depthwise", "loss",
                        "assigner", "strides", "backbone", "neck", "head", "out_indices", "x"])  # fmt: skip
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=12)  # fmt: skip
ALLOWED = (ConfigError, ValueError)


def assert_one_line(exc: BaseException) -> None:
    assert str(exc).strip() and "\n" not in str(exc).strip(), repr(exc)


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
@hypothesis.given(st.text(max_size=200))
def test_any_text_as_a_config_file_loads_or_is_a_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        assert_one_line(exc)
    else:
        assert isinstance(cfg, dict)


MODEL_BASE = {"backbone": {"type": "CSPDarknet", "depth": 0.33, "width": 0.125},
              "neck": {"type": "YOLOXPAFPN", "depth": 0.33, "width": 0.125},
              "head": {"type": "YOLOXHead", "num_classes": 3, "width": 0.125}}  # fmt: skip


@hypothesis.settings(max_examples=80, deadline=None, derandomize=True)
@hypothesis.given(part=st.sampled_from(["backbone", "neck", "head"]), key=KEYS, value=VALUES)
def test_fuzzed_model_sections_build_or_fail_with_a_named_error(part, key, value):
    model = {name: dict(section) for name, section in MODEL_BASE.items()}
    model[part][key] = value
    try:
        build_model({"model": model})
    except ALLOWED as exc:
        assert_one_line(exc)


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
@hypothesis.given(st.lists(st.text(max_size=30), max_size=4))
def test_fuzzed_overrides_apply_or_are_config_errors(configs_dir, overrides):
    try:
        load_config(configs_dir / "yolox_nano_shapes.yaml", overrides)
    except ConfigError as exc:
        assert_one_line(exc)


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
@hypothesis.given(st.binary(max_size=400))
def test_any_bytes_as_a_mot_file_parse_or_are_a_mot_format_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("mot") / "det.txt"
    path.write_bytes(data)
    try:
        rows = read_mot(path)
    except MotFormatError as exc:
        assert_one_line(exc) and str(exc).startswith(str(path))
    else:
        assert rows.ndim == 2 and np.isfinite(rows).all()


BOX = st.tuples(*[st.floats(-1e6, 1e6) | st.sampled_from([float("nan"), float("inf"), -float("inf")])] * 4)


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
@hypothesis.example([[((-1.0, 0.0, 0.0, float("inf")), 1.0)]])  # CI's find: an infinite box became a track
@hypothesis.given(st.lists(st.lists(st.tuples(BOX, st.floats(-1, 2) | st.just(float("nan"))), max_size=6), max_size=8))
def test_tracker_survives_any_detections(frames):
    tracker = ByteTracker(frame_rate=30)
    for detections in frames:
        boxes = np.array([d[0] for d in detections], np.float64).reshape(-1, 4)
        scores = np.array([d[1] for d in detections], np.float64)
        try:
            tracks = tracker.update(boxes, scores, np.zeros(len(scores), np.int64))
        except ValueError as exc:  # refused input is fine, with a message
            assert_one_line(exc)
            continue
        assert all(math.isfinite(v) for v in np.asarray(tracks.boxes).ravel())


def test_yaml_configs_never_construct_python_objects(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("model: !!python/object/apply:os.system ['echo pwned > " + str(tmp_path / "pwned") + "']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)
    assert not (tmp_path / "pwned").exists()
    assert yaml.safe_load("a: 1") == {"a": 1}
