"""The ReID interface: crops and embeddings from a tiny model built here, loading a torch.export file, and
appearance keeping identities through a crossing that motion alone gets wrong."""

import numpy as np
import pytest
import torch

from detector.registry import TRACKERS
from detector.tracking.appearance import ReID, TorchReID, cosine_distance
from detector.tracking.tracker import ByteTracker

RED, BLUE = (0, 0, 255), (255, 0, 0)  # BGR


def mean_colour_model() -> torch.nn.Module:
    """A 'ReID network' whose embedding is the crop's mean normalised colour."""
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


def box(cx, cy, w=40, h=100):
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], float)


def frame(people):
    """A grey 240 x 400 frame with ``(box, colour)`` people drawn in order (later ones in front)."""
    image = np.full((240, 400, 3), 128, np.uint8)
    for b, colour in people:
        x1, y1, x2, y2 = np.round(b).astype(int)
        image[y1:y2, x1:x2] = colour
    return image


def test_crops_and_embeddings():
    reid = TorchReID(mean_colour_model(), input_size=(32, 16), mean=(0, 0, 0), std=(1, 1, 1))
    assert isinstance(reid, ReID)
    image = frame([(box(100, 120), RED), (box(300, 120), BLUE)])
    crops = reid.crops(image, np.stack([box(100, 120), box(300, 120), [-50, -50, 10, 10]]))
    assert crops.shape == (3, 3, 32, 16)
    np.testing.assert_allclose(crops[0, :, 5, 5], [1, 0, 0])  # RGB, 0-1
    features = reid(image, np.stack([box(100, 120), box(300, 120)]))
    np.testing.assert_allclose(features, [[1, 0, 0], [0, 0, 1]], atol=1e-6)  # L2-normalised
    np.testing.assert_allclose(cosine_distance(features, features), [[0, 0.5], [0.5, 0]], atol=1e-6)
    assert reid(image, np.zeros((0, 4))).shape[0] == 0


def test_an_exported_checkpoint_plugs_in(tmp_path):
    # As the module docstring tells users to save their model.
    path = tmp_path / "reid.pt2"
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        mean_colour_model().eval(), (torch.zeros(2, 3, 32, 16),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(program, str(path))
    image = frame([(box(100, 120), RED)])
    direct = TorchReID(mean_colour_model(), input_size=(32, 16))(image, box(100, 120)[None])
    loaded = TRACKERS.build({"type": "ByteTracker", "reid": str(path), "reid_input_size": [32, 16]}, "track.tracker")
    np.testing.assert_allclose(loaded.reid(image, box(100, 120)[None]), direct, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing.pt: no such ReID model"):
        TorchReID.from_exported(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.pt: not a torch.export .pt2 model"):
        TorchReID.from_exported(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match=r"reid_input_size: expected \[height, width\]"):
        TorchReID(mean_colour_model(), input_size=(32,))


def test_appearance_keeps_identities_where_motion_swaps_them():
    # Red and blue walk side by side to the right (blue 24 px ahead, nearer the camera), are
    # both missed for 4 frames while red overtakes blue, then reappear with their places
    # swapped. Motion alone gives each track the person now where it was heading.
    scenes = []
    for t in range(24):
        red, blue = (box(100 + 3 * t, 120), box(124 + 3 * t, 120)) if t < 10 else (
            box(124 + 3 * t, 120), box(100 + 3 * t, 120))  # fmt: skip
        scenes.append((t, red, blue, frame([(red, RED), (blue, BLUE)])))
    reid = TorchReID(mean_colour_model(), input_size=(32, 16))
    for tracker, keeps in ((ByteTracker(), False), (ByteTracker(reid=reid), True)):
        owner = {}  # person -> id
        for t, red, blue, image in scenes:
            boxes = np.stack([red, blue]) if not 10 <= t < 14 else np.zeros((0, 4))
            tracks = tracker.update(boxes, np.full(len(boxes), 0.9), image=image)
            for track_id, b in zip(tracks.ids, tracks.boxes, strict=True):
                person = "red" if abs(b[0] - red[0]) < abs(b[0] - blue[0]) else "blue"
                owner.setdefault(person, set()).add(int(track_id))
        assert (owner == {"red": {1}, "blue": {2}}) is keeps, owner
