"""Weak support annotations: each kind's rule on hand-made cases, every input form through predict, clear
errors for bad coordinates, and the seeded rule that derives annotations from a ground-truth mask."""

from collections import deque

import numpy as np
import pytest
import torch
from PIL import Image

import ntre_zoo
from ntre_zoo.inference.annotations import (
    POINT_RADIUS,
    SCRIBBLE_RADIUS,
    Box,
    Points,
    Scribble,
    annotation_from_mask,
    default_radius,
    dilate_disc,
    support_mask,
)


def _scene(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[10:30, 20:44] = 1
    return image, mask


def _disc(h, w, cx, cy, r):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)


# ------------------------------------------------------------------ the rules
def test_box_is_its_filled_rectangle_with_exclusive_right_and_bottom_edges():
    expected = np.zeros((6, 7), np.uint8)
    expected[2:5, 1:4] = 1
    np.testing.assert_array_equal(Box(1, 2, 4, 5).to_mask((6, 7)), expected)
    np.testing.assert_array_equal(Box(1.5, 2.2, 3.1, 4.01).to_mask((6, 7)), expected)  # floor x0,y0; ceil x1,y1
    assert Box(0, 0, 7, 6).to_mask((6, 7)).all()  # the whole image is allowed


def test_points_become_discs_whose_default_radius_scales_with_the_long_side():
    np.testing.assert_array_equal(Points([(4, 3)], radius=2).to_mask((8, 9)), _disc(8, 9, 4, 3, 2))
    r = default_radius(POINT_RADIUS, (100, 200))
    assert r == 6
    expected = np.maximum(_disc(100, 200, 50, 40, r), _disc(100, 200, 150, 90, r))  # coordinates are floored
    np.testing.assert_array_equal(Points([(50, 40), (150.7, 90.2)]).to_mask((100, 200)), expected)
    assert default_radius(POINT_RADIUS, (10, 10)) == 1  # never below one pixel


def test_scribble_is_dilated_by_a_disc():
    strokes = np.zeros((30, 40), bool)
    strokes[15, 5:35] = True
    r = default_radius(SCRIBBLE_RADIUS, (30, 40))
    expected = dilate_disc(strokes, r)
    np.testing.assert_array_equal(Scribble(strokes).to_mask((30, 40)), expected)
    np.testing.assert_array_equal(Scribble(strokes, radius=0).to_mask((30, 40)), strokes)
    assert Scribble(strokes, radius=3).to_mask((30, 40))[12:19, 5:35].all()
    assert (
        Scribble(strokes, radius=3).to_mask((30, 40)).sum() == 30 * 7 + 2 * 11
    )  # the bar and, past each end, 5 + 5 + 1 pixels of the disc


def test_default_radii_keep_a_feature_cell_on_the_models_canvas():
    assert default_radius(POINT_RADIUS, (200, 200)) == 6
    assert default_radius(POINT_RADIUS, (200, 200), canvas=129) == 10  # ceil(6 * 200 / 129): 6 canvas pixels
    assert default_radius(POINT_RADIUS, (500, 400), canvas=473) == 15  # the image-relative rule is larger
    assert default_radius(SCRIBBLE_RADIUS, (500, 400), canvas=473) == 8  # ceil(6 * 500 / 473) > round(7.5)
    np.testing.assert_array_equal(Points([(50, 50)]).to_mask((100, 100), canvas=50), _disc(100, 100, 50, 50, 12))
    np.testing.assert_array_equal(
        Points([(50, 50)], radius=2).to_mask((100, 100), canvas=50), _disc(100, 100, 50, 50, 2)
    )


def test_a_thin_scribble_survives_a_small_canvas(tiny_model):
    image, _ = _scene()
    strokes = np.zeros(image.shape[:2], bool)
    strokes[20, 20:44] = True  # one pixel thin: without the canvas floor its mask vanishes at 65 px
    with pytest.raises(ValueError, match="too small"):
        tiny_model.predict(image, Scribble(strokes, radius=1), image)
    assert tiny_model.predict(image, Scribble(strokes), image).shape == image.shape[:2]


def test_dilate_disc_equals_the_union_of_discs():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w, r = *rng.integers(1, 25, 2), int(rng.integers(0, 7))
        mask = rng.random((h, w)) < 0.05
        expected = np.zeros((h, w), np.uint8)
        for y, x in zip(*np.nonzero(mask), strict=True):
            expected |= _disc(h, w, x, y, r)
        np.testing.assert_array_equal(dilate_disc(mask, r), expected.astype(bool))


def test_support_mask_reads_plain_masks_unchanged():
    _, mask = _scene()
    assert torch.equal(support_mask(mask * 255, mask.shape, "m"), torch.from_numpy(mask).long())


# ------------------------------------------------------------------ every input form, through predict
@pytest.mark.parametrize(
    "annotation",
    [
        Box(20, 10, 44, 30),
        Points([(30, 20), (40, 25)]),
        Scribble(np.pad(np.ones((2, 20), bool), ((19, 27), (22, 22)))),
    ],
    ids=["box", "points", "scribble"],
)
def test_each_kind_on_every_image_form_predicts_like_its_rasterised_mask(tiny_model, tmp_path, annotation):
    image, _ = _scene()
    query, _ = _scene(seed=1)
    rasterised = annotation.to_mask(image.shape[:2], canvas=tiny_model.config.test_size)  # the radii predict uses
    expected = tiny_model.predict(image, rasterised, query, return_details=True)
    Image.fromarray(image).save(tmp_path / "s.png")
    for form in (str(tmp_path / "s.png"), Image.fromarray(image), image, torch.from_numpy(image).permute(2, 0, 1)):
        got = tiny_model.predict(form, annotation, query, return_details=True)
        np.testing.assert_array_equal(got.probability, expected.probability)
    support = tiny_model.encode_support([image, image[:, ::-1]], [annotation, rasterised])
    assert support.shot == 2


def test_scribble_strokes_in_every_mask_form(tmp_path):
    strokes = np.zeros((20, 30), np.uint8)
    strokes[5:7, 3:25] = 1
    expected = Scribble(strokes, radius=2).to_mask((20, 30))
    Image.fromarray(strokes * 255).save(tmp_path / "strokes.png")
    for form in (
        tmp_path / "strokes.png",
        Image.fromarray(strokes * 255),
        strokes.astype(bool),
        torch.from_numpy(strokes),
    ):
        np.testing.assert_array_equal(Scribble(form, radius=2).to_mask((20, 30)), expected)


def test_weak_supports_through_segment_and_the_top_level_names(tiny_model):
    image, mask = _scene()
    query, _ = _scene(seed=2)
    result = tiny_model.segment(query, {"a": (image, ntre_zoo.Box(20, 10, 44, 30)), "b": ([image], [mask])})
    assert result.classes == ("a", "b") and result.label_map.shape == query.shape[:2]
    assert ntre_zoo.Points is Points and ntre_zoo.Scribble is Scribble


# ------------------------------------------------------------------ errors
def test_box_errors_name_the_problem():
    with pytest.raises(ValueError, match="empty"):
        Box(10, 5, 10, 8)
    with pytest.raises(ValueError, match="empty"):
        Box(10, 8, 12, 3)
    with pytest.raises(ValueError, match=">= 0"):
        Box(-1, 0, 5, 5)
    with pytest.raises(ValueError, match="finite"):
        Box(0, 0, float("nan"), 5)
    with pytest.raises(TypeError, match="number"):
        Box("0", 0, 5, 5)
    with pytest.raises(ValueError, match=r"outside the 6x7 \(H x W\) image.*x1 <= 7"):
        Box(0, 0, 8, 6).to_mask((6, 7), "support_masks[0]")


def test_points_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least one"):
        Points([])
    with pytest.raises(ValueError, match=r"points\[1\] must be an \(x, y\) pair"):
        Points([(1, 2), (3,)])
    with pytest.raises(TypeError, match="list of"):
        Points("1,2")
    with pytest.raises(ValueError, match="radius"):
        Points([(1, 2)], radius=-1)
    with pytest.raises(ValueError, match=r"click 1 at \(x=9, y=2\) is outside the 5x9"):
        Points([(1, 1), (9, 2)]).to_mask((5, 9))


def test_scribble_errors_name_the_problem():
    with pytest.raises(ValueError, match="no stroke"):
        Scribble(np.zeros((5, 5), bool)).to_mask((5, 5))
    with pytest.raises(ValueError, match=r"scribble is 5x5 but its image is 6x5"):
        Scribble(np.ones((5, 5), bool)).to_mask((6, 5))
    with pytest.raises(ValueError, match="radius"):
        Scribble(np.ones((5, 5), bool), radius=1.5)


def test_predict_names_the_support_index_of_a_bad_annotation(tiny_model):
    image, mask = _scene()
    with pytest.raises(ValueError, match=r"support_masks\[1\].*outside the 48x64"):
        tiny_model.predict([image, image], [mask, Box(0, 0, 65, 10)], image)
    with pytest.raises(ValueError, match=r"support_masks\[0\].*click 0"):
        tiny_model.predict(image, Points([(10, 48)]), image)


# ------------------------------------------------------------------ annotations derived from a ground truth
def _components(mask):
    """8-connected components by breadth-first search (the slow, obvious way)."""
    seen, out = np.zeros_like(mask), []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        queue, comp = deque([start]), []
        seen[start] = True
        while queue:
            y, x = queue.popleft()
            comp.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        out.append(comp)
    return out


def test_box_from_mask_is_the_box_of_the_largest_component():
    from ntre_zoo.inference.annotations import _largest_component

    mask = np.zeros((40, 50), np.uint8)
    mask[2:8, 3:9] = 1  # 36 pixels
    mask[20:30, 10:45] = 1  # the largest
    mask[30, 45] = 1  # touches it diagonally: same component
    assert annotation_from_mask(mask, "box") == Box(10, 20, 46, 31)
    rng = np.random.default_rng(1)
    for _ in range(30):
        random = rng.random((int(rng.integers(2, 30)), int(rng.integers(2, 30)))) < 0.45
        if random.any():
            assert _largest_component(random).sum() == max(len(c) for c in _components(random))


def test_points_from_mask_are_seeded_and_inside_the_eroded_target():
    mask = np.zeros((100, 120), np.uint8)
    mask[20:80, 30:100] = 1
    points = annotation_from_mask(mask, "points", seed=3, clicks=5)
    assert len(points.points) == 5 and points == annotation_from_mask(mask, "points", seed=3, clicks=5)
    assert points != annotation_from_mask(mask, "points", seed=4, clicks=5)
    r = default_radius(POINT_RADIUS, mask.shape)
    for x, y in points.points:
        assert 20 + r <= y < 80 - r and 30 + r <= x < 100 - r  # the whole click disc lies on the target
    assert (points.to_mask(mask.shape) <= mask).all()


def test_points_from_a_thin_target_fall_back_to_its_pixels():
    mask = np.zeros((100, 100), np.uint8)
    mask[50, 10:90] = 1  # thinner than a click disc
    points = annotation_from_mask(mask, "points", clicks=3)
    assert all(y == 50 and 10 <= x < 90 for x, y in points.points)


def test_scribble_from_mask_is_a_thin_line_inside_the_target():
    mask = np.zeros((40, 80), np.uint8)
    mask[10:30, 5:75] = 1
    strokes = annotation_from_mask(mask, "scribble").strokes
    assert strokes.any() and (strokes <= mask.astype(bool)).all()
    assert strokes[10:30, 15:65].sum(axis=0).max() == 1  # one pixel wide along the bar
    assert set(np.nonzero(strokes[:, 15:65])[0]) <= {19, 20}  # along its middle


def test_annotation_from_mask_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        annotation_from_mask(np.ones((4, 4), np.uint8), "polygon")
    with pytest.raises(ValueError, match="no target pixel"):
        annotation_from_mask(np.zeros((4, 4), np.uint8), "box")
    with pytest.raises(ValueError, match="clicks"):
        annotation_from_mask(np.ones((4, 4), np.uint8), "points", clicks=0)


# ------------------------------------------------------------------ boundaries
def test_a_one_pixel_box_on_the_bottom_right_corner_is_that_pixel():
    expected = np.zeros((6, 7), np.uint8)
    expected[5, 6] = 1
    np.testing.assert_array_equal(Box(6, 5, 7, 6).to_mask((6, 7)), expected)
    np.testing.assert_array_equal(Box(6.5, 5.5, 7, 6).to_mask((6, 7)), expected)  # .5 floored, not rounded to 7, 6


def test_a_one_pixel_wide_box_on_the_image_edge_is_that_column_or_row():
    last_column, last_row = np.zeros((6, 7), np.uint8), np.zeros((6, 7), np.uint8)
    last_column[:, 6] = 1
    last_row[5, :] = 1
    np.testing.assert_array_equal(Box(6, 0, 7, 6).to_mask((6, 7)), last_column)
    np.testing.assert_array_equal(Box(0, 5, 7, 6).to_mask((6, 7)), last_row)


def test_a_box_of_zero_width_or_height_is_empty():
    with pytest.raises(ValueError, match="empty"):
        Box(3, 1, 3, 4)
    with pytest.raises(ValueError, match="empty"):
        Box(1, 3, 4, 3)


def test_a_box_past_the_bottom_edge_is_refused_even_by_half_a_pixel():
    with pytest.raises(ValueError, match=r"outside the 6x7 \(H x W\) image.*y1 <= 6"):
        Box(0, 0, 7, 7).to_mask((6, 7))
    with pytest.raises(ValueError, match="outside the 6x7"):
        Box(0, 0, 7, 6.5).to_mask((6, 7))
    with pytest.raises(ValueError, match="outside the 6x7"):
        Box(0, 0, 7.5, 6).to_mask((6, 7))


def test_a_click_on_the_last_row_and_column_marks_that_pixel():
    expected = np.zeros((5, 9), np.uint8)
    expected[4, 8] = 1
    np.testing.assert_array_equal(Points([(8, 4)], radius=0).to_mask((5, 9)), expected)
    np.testing.assert_array_equal(Points([(8.5, 4.5)], radius=0).to_mask((5, 9)), expected)  # floored, inside
    np.testing.assert_array_equal(Points([(8.99, 4.99)], radius=0).to_mask((5, 9)), expected)


def test_a_click_at_x_equal_to_w_or_y_equal_to_h_is_outside():
    with pytest.raises(ValueError, match=r"click 0 at \(x=9, y=0\) is outside the 5x9"):
        Points([(9, 0)]).to_mask((5, 9))
    with pytest.raises(ValueError, match=r"click 0 at \(x=0, y=5\) is outside the 5x9.*0 <= y < 5"):
        Points([(0, 5)]).to_mask((5, 9))


def test_a_click_disc_on_the_corner_is_clipped_to_the_image():
    expected = np.zeros((5, 5), np.uint8)
    expected[4, 3:] = expected[3:, 4] = 1  # the centre and its two neighbours inside the image
    np.testing.assert_array_equal(Points([(4, 4)], radius=1).to_mask((5, 5)), expected)


def test_the_canvas_floor_of_the_radius_follows_the_long_side():
    # round(0.03 * 300) = 9 < ceil(6 * 300 / 100) = 18, whichever side is long
    assert default_radius(POINT_RADIUS, (100, 300), canvas=100) == 18
    assert default_radius(POINT_RADIUS, (300, 100), canvas=100) == 18


def test_a_scribble_touching_the_border_is_dilated_up_to_it():
    strokes = np.zeros((5, 5), bool)
    strokes[2, 4] = True  # on the last column
    expected = np.zeros((5, 5), np.uint8)
    expected[1:4, 4] = expected[2, 3] = 1
    np.testing.assert_array_equal(Scribble(strokes, radius=1).to_mask((5, 5)), expected)


def test_ignore_pixels_of_a_scribble_are_not_strokes():
    strokes = np.zeros((4, 6), np.uint8)
    strokes[1, 1:3] = 1
    strokes[3, :] = 255  # "ignore" in a {0, 1, 255} mask
    np.testing.assert_array_equal(Scribble(strokes, radius=0).to_mask((4, 6)), strokes == 1)


def test_mask_threshold_binarises_anti_aliased_strokes_exclusively():
    strokes = np.array([[0, 100, 127, 128, 255]], np.uint8)
    got = support_mask(Scribble(strokes, radius=0), (1, 5), "s", mask_threshold=127)
    assert got.tolist() == [[0, 0, 0, 1, 1]]  # 127 is not above 127


# ------------------------------------------------------------------ the derived points and boxes at their edges
def test_exactly_as_many_inner_pixels_as_clicks_are_all_clicked():
    mask = np.zeros((10, 10), np.uint8)
    mask[3:6, 2:7] = 1  # 3 x 5; eroded by the radius-1 disc (a cross) it keeps row 4, columns 3..5
    assert default_radius(POINT_RADIUS, mask.shape) == 1
    assert set(annotation_from_mask(mask, "points", clicks=3).points) == {(3, 4), (4, 4), (5, 4)}


def test_more_clicks_than_target_pixels_clicks_each_pixel_once():
    mask = np.zeros((6, 6), np.uint8)
    mask[2, 3] = mask[3, 4] = 1  # diagonal neighbours: one component of two pixels
    assert sorted(annotation_from_mask(mask, "points", clicks=3).points) == [(3, 2), (4, 3)]


def test_of_equal_components_the_one_holding_the_last_pixel_is_annotated():
    mask = np.zeros((9, 9), np.uint8)
    mask[1:3, 6:8] = 1  # first in raster order
    mask[5:7, 1:3] = 1  # same size, holds the last pixel
    assert annotation_from_mask(mask, "box") == Box(1, 5, 3, 7)


def test_points_from_mask_keep_their_disc_on_the_target_at_the_models_canvas():
    mask = np.zeros((20, 20), np.uint8)
    mask[2:18, 2:18] = 1
    r = default_radius(POINT_RADIUS, mask.shape, canvas=20)
    assert r == 6  # ceil(6 * 20 / 20), against round(0.6) -> 1 without the canvas
    points = annotation_from_mask(mask, "points", clicks=5, canvas=20)
    assert all(2 + r <= v < 18 - r for point in points.points for v in point)  # 8..11 on both axes
    assert (points.to_mask(mask.shape, canvas=20) <= mask).all()
