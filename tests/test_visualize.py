"""ntre_zoo.visualize: overlays (fill, outline, legend), palette masks, heat maps and panels."""

import numpy as np
import pytest
from PIL import Image

import ntre_zoo
from ntre_zoo.inference.predict import Prediction
from ntre_zoo.inference.segment import Segmentation
from ntre_zoo.inference.visualize import PALETTE, heatmap, label_image, overlay, panel, save_panel


def _image(h=60, w=80):
    return np.full((h, w, 3), 100, np.uint8)


def _labels(h=60, w=80):
    labels = np.zeros((h, w), np.uint8)
    labels[10:30, 10:40] = 1
    labels[35:55, 45:75] = 2
    return labels


def _segmentation(h=60, w=80):
    labels = _labels(h, w)
    probabilities = np.stack([(labels == 1), (labels == 2)]).astype(np.float32)
    return Segmentation(("dog", "cat"), labels, probabilities, np.zeros((h, w), np.float32), probabilities * 0.5)


def test_overlay_fills_outlines_and_leaves_the_rest_alone():
    picture = np.asarray(overlay(_image(), _labels(), alpha=0.5, legend=False))
    assert picture.shape == (60, 80, 3)
    np.testing.assert_array_equal(picture[0, 0], [100, 100, 100])  # background untouched
    blend = np.round(0.5 * 100 + 0.5 * np.array(PALETTE[1], np.float32))
    np.testing.assert_array_equal(picture[45, 60], blend)  # inside class 2: half image, half its colour
    np.testing.assert_array_equal(picture[10, 20], PALETTE[0])  # class 1's border in its full colour
    np.testing.assert_array_equal(picture[29, 39], PALETTE[0])
    plain = np.asarray(overlay(_image(), _labels(), alpha=0.5, outline=False, legend=False))
    np.testing.assert_array_equal(plain[10, 20], np.round(0.5 * 100 + 0.5 * np.array(PALETTE[0], np.float32)))


def test_overlay_legend_only_for_named_classes():
    unnamed = np.asarray(overlay(_image(), _labels(), legend=True))
    named = np.asarray(overlay(_image(), _labels(), classes=["dog", "cat"]))
    assert (named[:20, :20] != unnamed[:20, :20]).any()  # the legend sits at the top left
    np.testing.assert_array_equal(named[40:, 40:], unnamed[40:, 40:])
    from_result = np.asarray(overlay(_image(), _segmentation()))  # a Segmentation brings its names
    np.testing.assert_array_equal(from_result, named)


def test_overlay_accepts_every_result_form_and_checks_sizes():
    mask = (_labels() == 1).astype(np.uint8)
    prediction = Prediction(mask, mask.astype(np.float32), mask * 0.0, mask * 0.0)
    expected = np.asarray(overlay(_image(), mask))
    np.testing.assert_array_equal(np.asarray(overlay(_image(), prediction)), expected)
    np.testing.assert_array_equal(np.asarray(overlay(Image.fromarray(_image()), Image.fromarray(mask))), expected)
    with pytest.raises(ValueError, match=r"labels are 30x80 but the image is 60x80"):
        overlay(_image(), mask[:30])
    with pytest.raises(ValueError, match="fractional"):
        overlay(_image(), mask * 0.5)
    with pytest.raises(ValueError, match="alpha"):
        overlay(_image(), mask, alpha=2)


def test_label_image_keeps_the_values_and_shows_the_palette():
    picture = label_image(_labels())
    assert picture.mode == "P"
    np.testing.assert_array_equal(np.asarray(picture), _labels())
    rgb = np.asarray(picture.convert("RGB"))
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(rgb[40, 50], PALETTE[1])


def test_heatmap_runs_from_dark_blue_to_yellow():
    picture = np.asarray(heatmap(np.array([[0.0, 1.0, 2.0]])))
    np.testing.assert_array_equal(picture[0], [[30, 30, 120], [250, 220, 40], [250, 220, 40]])


def test_panel_has_a_tile_per_picture_and_wraps_at_max_width():
    image = _image()
    supports = {"dog": ([image, image], [_labels() == 1, ntre_zoo.Box(0, 0, 10, 10)]), "cat": (image, _labels() == 2)}
    # 3 supports, query, prediction, BG map, 2 DO maps = 8 tiles; cells 4:3 of height 90 -> 120 + 8 px apart
    wide = panel(image, _segmentation(), supports, tile=90, max_width=2000)
    assert wide.width == 8 + 8 * 128
    narrow = panel(image, _segmentation(), supports, tile=90, max_width=600)
    assert narrow.width == 8 + 4 * 128 <= 600  # 8 tiles over 2 rows of 4 (balanced)
    assert narrow.height - 8 == 2 * (wide.height - 8)
    mask = (_labels() == 1).astype(np.uint8)
    single = panel(image, Prediction(mask, mask * 1.0, mask * 0.0, mask * 0.0), tile=90, title="x")
    assert single.width == 8 + 4 * 128  # query, prediction, BG, DO
    with pytest.raises(TypeError, match="Prediction or a Segmentation"):
        panel(image, mask)


def test_save_panel_writes_a_png_and_the_demo_uses_it(tmp_path):
    out = save_panel(tmp_path / "sub" / "p.png", _image(), _segmentation(), tile=64)
    with Image.open(out) as picture:
        assert picture.format == "PNG"
    assert [p.name for p in out.parent.iterdir()] == ["p.png"]  # no temporary file left
    assert ntre_zoo.visualize.save_panel is save_panel
