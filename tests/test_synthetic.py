"""The procedural benchmark: determinism, layout, classes and object sizes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from ntre_zoo.data import SYNTHETIC_CLASSES, make_synthetic_voc, synthetic_episode


def test_synthetic_episode_shapes_and_values():
    supports, masks, query, query_mask = synthetic_episode(3, fold=1, shot=3, size=128)
    assert len(supports) == len(masks) == 3
    for image, mask in zip([*supports, query], [*masks, query_mask], strict=False):
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert mask.shape == (128, 128) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        assert mask.sum() > 0.04 * mask.size  # the target is visible in every image


def test_synthetic_episode_is_deterministic():
    a = synthetic_episode(7, shot=2)
    b = synthetic_episode(7, shot=2)
    c = synthetic_episode(8, shot=2)
    for x, y in zip(a[0] + [a[2]], b[0] + [b[2]], strict=False):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[2], c[2])


@pytest.mark.parametrize("bad", [{"fold": 4}, {"shot": 0}, {"size": 10}])
def test_synthetic_episode_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        synthetic_episode(0, **bad)


def test_classes_differ_within_each_fold_and_pair_by_shape():
    assert len(SYNTHETIC_CLASSES) == 20
    for fold in range(4):
        shapes = {SYNTHETIC_CLASSES[c].shape for c in range(5 * fold, 5 * fold + 5)}
        assert len(shapes) == 5
    for c in range(10):
        a, b = SYNTHETIC_CLASSES[c], SYNTHETIC_CLASSES[c + 10]
        assert a.shape == b.shape and (a.colour, a.pattern) != (b.colour, b.pattern)


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_make_synthetic_voc_layout_and_determinism(tmp_path):
    voc = make_synthetic_voc(tmp_path / "a", seed=5, train=6, val=3, size=128, progress=False)
    assert voc == tmp_path / "a" / "VOCdevkit" / "VOC2012"
    train_ids = (voc / "ImageSets" / "SegmentationAug" / "train_aug.txt").read_text().split()
    val_ids = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert len(train_ids) == 6 and len(val_ids) == 3
    for name in train_ids + val_ids:
        image = Image.open(voc / "JPEGImages" / f"{name}.jpg")
        label = Image.open(voc / "SegmentationClassAug" / f"{name}.png")
        assert label.mode == "P" and image.size == label.size and max(image.size) == 128
        values = set(np.unique(np.asarray(label)).tolist())
        assert values <= set(range(21)) | {255} and values - {0, 255}
    again = make_synthetic_voc(tmp_path / "b", seed=5, train=6, val=3, size=128, progress=False)
    assert _digest(voc) == _digest(again)


def test_default_size_objects_pass_the_pixel_rule(tmp_path):
    voc = make_synthetic_voc(tmp_path, seed=0, train=30, val=0, progress=False)
    counts = []
    for path in sorted((voc / "SegmentationClassAug").glob("*.png")):
        label = np.asarray(Image.open(path))
        counts += [int((label == c).sum()) for c in np.unique(label) if c not in (0, 255)]
    assert np.mean(np.asarray(counts) >= 2048) > 0.8
