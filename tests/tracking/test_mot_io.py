"""detector.tracking.mot_io: MOTChallenge det/gt/results files and seqinfo.ini."""

import time

import numpy as np
import pytest
from conftest import shared_dir

from detector.errors import MotFormatError
from detector.tracking.mot_io import (
    group_by_frame,
    mot_to_xyxy,
    read_mot,
    read_seqinfo,
    write_mot_results,
    xyxy_to_mot_xywh,
)


@pytest.fixture(scope="module")
def tud():
    return shared_dir() / "data" / "mot" / "TUD-Campus"


def test_real_det_and_gt_files_load(tud):
    det = read_mot(tud / "det" / "det.txt")
    gt = read_mot(tud / "gt" / "gt.txt", what="gt")
    # wc -l: 321 and 359 lines; the files end in CRLF.
    assert det.shape == (321, 10) and gt.shape == (359, 10) and det.dtype == gt.dtype == np.float64
    np.testing.assert_allclose(det[0], [1, -1, 281.931, 187.466, 79.93, 209.537, 0.997784, -1, -1, -1])
    np.testing.assert_array_equal(gt[0], [1, 1, 399, 182, 121, 229, 1, -1, -1, -1])
    assert (det[:, 1] == -1).all() and (gt[:, 6] == 1).all()
    assert det[:, 0].min() == 1 and gt[:, 0].max() == 71
    frames = group_by_frame(gt)
    assert list(frames) == sorted(frames) and sum(len(v) for v in frames.values()) == 359
    assert (frames[1][:, 0] == 1).all() and frames[1][:, 1].tolist() == gt[gt[:, 0] == 1, 1].tolist()


def test_round_trip_write_sorts_and_rounds(tmp_path):
    rows = np.array(
        [
            [2, 5, 10.123, 20.456, 30.0, 40.0, 0.98765],
            [1, 7, 1.0, 2.0, 3.0, 4.0, 0.5],
            [1, 3, 100.5, 200.25, 50.0, 60.0, 1.0],
        ]
    )
    path = write_mot_results(tmp_path / "out" / "seq.txt", rows)
    assert path.read_text().splitlines() == [
        "1,3,100.50,200.25,50.00,60.00,1.0000,-1,-1,-1",
        "1,7,1.00,2.00,3.00,4.00,0.5000,-1,-1,-1",
        "2,5,10.12,20.46,30.00,40.00,0.9877,-1,-1,-1",
    ]
    back = read_mot(path, what="results")
    expected = rows[[2, 1, 0]]
    np.testing.assert_allclose(back[:, :7], expected, atol=5e-5 + 5e-3)
    assert (back[:, 7:] == -1).all()
    assert [p.name for p in path.parent.iterdir()] == ["seq.txt"]  # no temporary file left


def test_write_refuses_bad_rows_and_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match=r"expected \[N, 7\]"):
        write_mot_results(tmp_path / "a.txt", np.zeros((2, 6)))
    with pytest.raises(ValueError, match="row 1"):
        write_mot_results(tmp_path / "b.txt", [[1, 1, 0, 0, 5, 5, 1], [1, 2, 0, 0, 0.001, 5, 1]])
    with pytest.raises(ValueError, match="row 0"):
        write_mot_results(tmp_path / "c.txt", [[0, 1, 0, 0, 5, 5, 1]])
    assert list(tmp_path.iterdir()) == []


def test_short_lines_blank_lines_whitespace_and_empty_files(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("\n1,2,3,4,5,6\n\n  \r\n2 3 4 5 6 7 0.5\n3, 4, 5, 6, 7, 8, 0.9, 1, 2, 3\n")
    rows = read_mot(path)
    np.testing.assert_array_equal(
        rows,
        [[1, 2, 3, 4, 5, 6, -1, -1, -1, -1], [2, 3, 4, 5, 6, 7, 0.5, -1, -1, -1], [3, 4, 5, 6, 7, 8, 0.9, 1, 2, 3]],
    )
    path.write_text("")
    assert read_mot(path).shape == (0, 10)
    path.write_text("\n \n")
    assert read_mot(path).shape == (0, 10)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_mot(tmp_path / "nope.txt")


@pytest.mark.parametrize(
    "line, message",
    [
        ("1,-1,10,20,30,40", None),  # a valid line, for contrast
        ("1,-1,10,20,30", "5 fields in a detections line; expected 6 to 10 comma-separated numbers"),
        ("1,-1,10,20,30,40,1,-1,-1,-1,7", "11 fields in a detections line"),
        ("1,-1,ten,20,30,40,0.9", "x is 'ten'; expected a number"),
        ("1,-1,10,20,,40,0.9", "w is ''; expected a number"),
        ("1,-1,10,20,30,40,nan", "score is 'nan'; expected a finite number"),
        ("1,-1,10,inf,30,40,0.9", "y is 'inf'; expected a finite number"),
        ("1,-1,10,20,0,40,0.9", "w is '0'; expected a positive width in pixels"),
        ("1,-1,10,20,30,-4,0.9", "h is '-4'; expected a positive height in pixels"),
        ("0,-1,10,20,30,40,0.9", "frame is '0'; expected a positive integer (frames are 1-based)"),
        ("2.5,-1,10,20,30,40,0.9", "frame is '2.5'; expected a positive integer"),
        ("2,1.5,10,20,30,40,0.9", "id is '1.5'; expected an integer"),
        ("2,1_0,10,20,30,40,0.9", "id is '1_0'; expected a number"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "det.txt"
    good = "1,-1,1,2,3,4,0.5,-1,-1,-1"
    path.write_text(f"{good}\n\n{good}\n{line}\n{good}\n")
    if message is None:
        assert read_mot(path).shape == (4, 10)
        return
    with pytest.raises(MotFormatError) as info:
        read_mot(path)
    text = str(info.value)
    assert text.startswith(f"{path}:4: ") and message in text and "\n" not in text


def test_the_first_bad_line_is_reported(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,1,1,2,3,4,1\n1,2,1,2,3,0,1\n0,3,1,2,3,4,1\n")
    with pytest.raises(MotFormatError, match=r"gt\.txt:2: h is '0'"):
        read_mot(path, what="gt")


def test_box_conversions():
    records = np.array([[1, 1, 10, 20, 30, 40, 1], [2, 1, 0.5, 1.5, 2, 3, 1]])
    xyxy = mot_to_xyxy(records)
    np.testing.assert_array_equal(xyxy, [[10, 20, 40, 60], [0.5, 1.5, 2.5, 4.5]])
    np.testing.assert_array_equal(xyxy_to_mot_xywh(xyxy), records[:, 2:6])
    assert mot_to_xyxy(np.zeros((0, 10))).shape == (0, 4) and xyxy_to_mot_xywh(np.zeros((0, 4))).shape == (0, 4)
    assert group_by_frame(np.zeros((0, 10))) == {}


def test_reading_100k_lines_is_fast(tmp_path):
    rng = np.random.default_rng(0)
    n = 100_000
    rows = np.column_stack(
        [rng.integers(1, 1000, n), rng.integers(1, 500, n), rng.uniform(0, 900, (n, 2)), rng.uniform(1, 200, (n, 3))]
    )
    path = write_mot_results(tmp_path / "big.txt", rows)
    start = time.perf_counter()
    back = read_mot(path)
    assert time.perf_counter() - start < 1.0 and back.shape == (n, 10)


def test_seqinfo_of_the_real_sequence(tud):
    assert read_seqinfo(tud / "seqinfo.ini") == {
        "name": "TUD-Campus",
        "imDir": "img1",
        "frameRate": 25,
        "seqLength": 71,
        "imWidth": 640,
        "imHeight": 480,
        "imExt": ".jpg",
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("[Sequence]\nname=a\nimDir=img1\nframeRate=25\nseqLength=7\nimWidth=640\nimExt=.jpg\n", "imHeight is missing"),
        (
            "[Sequence]\nname=a\nimDir=img1\nframeRate=2x\nseqLength=7\nimWidth=640\nimHeight=4\nimExt=.jpg\n",
            "frameRate is '2x'; expected a positive integer",
        ),
        ("[Other]\nname=a\n", "no [Sequence] section"),
        ("name=a\n", "expected an INI file with a [Sequence] section"),
    ],
)
def test_broken_seqinfo_is_a_one_line_error(tmp_path, text, message):
    path = tmp_path / "seqinfo.ini"
    path.write_text(text)
    with pytest.raises(MotFormatError) as info:
        read_seqinfo(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="missing.ini"):
        read_seqinfo(tmp_path / "missing.ini")


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    st.lists(
        st.tuples(
            st.integers(1, 10_000),
            st.integers(-1, 10_000),
            st.floats(-1e4, 1e4),
            st.floats(-1e4, 1e4),
            st.floats(0.01, 1e4),
            st.floats(0.01, 1e4),
            st.floats(0, 1),
        ),
        max_size=30,
    )
)
def test_property_valid_rows_round_trip(tmp_path_factory, rows):
    rows = np.array(rows, dtype=np.float64).reshape(-1, 7)
    path = write_mot_results(tmp_path_factory.mktemp("rt") / "r.txt", rows)
    back = read_mot(path, what="results")
    expected = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
    assert back.shape == (len(rows), 10)
    np.testing.assert_array_equal(back[:, :2], expected[:, :2])
    np.testing.assert_allclose(back[:, 2:6], expected[:, 2:6], rtol=0, atol=0.005 + 1e-9)
    np.testing.assert_allclose(back[:, 6], expected[:, 6], rtol=0, atol=0.00005 + 1e-12)


_FIELD = st.one_of(
    st.integers(-3, 50).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "-inf", "1e400", "1_0", "0x1", "--1", "\x00", "\ufffd", "1.5.2", "+3", ".5"]),
    st.text(max_size=6),
)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(st.lists(st.lists(_FIELD, min_size=0, max_size=12).map(",".join), max_size=6))
def test_property_garbage_parses_or_raises_mot_format_error(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("junk") / "junk.txt"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        rows = read_mot(path)
    except MotFormatError as exc:
        assert str(exc).startswith(f"{path}:") and "\n" not in str(exc)
    else:
        assert rows.ndim == 2 and rows.shape[1] == 10 and np.isfinite(rows).all()
        assert (rows[:, 0] >= 1).all() and (rows[:, 4:6] > 0).all()
