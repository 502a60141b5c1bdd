"""Reading predict's inputs (``ntre_zoo/inference/image_io.py``): the pixel cap (read from a file's header,
on every input form), refused non-finite values, EXIF orientation, and soft, grey-RGB and colour masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import address_space_limit as _address_space_limit
from data_fixtures import grey_png
from data_fixtures import scene as _scene
from PIL import Image

import ntre_zoo
from ntre_zoo.inference.image_io import check_mask_threshold, load_image, load_mask


# ---------------------------------------------------------------------------------------------- the pixel cap
def _png_of_zeros(path: Path, width: int, height: int) -> Path:
    path.write_bytes(grey_png(width, height))
    return path


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_an_image_over_the_pixel_cap_is_refused_from_its_header(tiny_model, tmp_path):
    """A 12000 x 12000 PNG of a few hundred KB used to take 5 GB in predict; its header is enough to refuse it."""
    bomb = _png_of_zeros(tmp_path / "bomb.png", 12000, 12000)
    assert bomb.stat().st_size < 1_000_000
    image, mask = _scene()
    with _address_space_limit(200 << 20):  # decoding it alone would take 144 MB, predicting on it gigabytes
        message = r"^query \('.*bomb\.png'\): the image is 12000 x 12000 pixels \(144\.0 megapixels\), more "
        with pytest.raises(ValueError, match=message):
            tiny_model.predict(image, mask, str(bomb))
        with pytest.raises(ValueError, match=r"^support_imgs\[0\] \(.*\): .* max_pixels=40000000 \(40 megapixels\)"):
            tiny_model.predict(str(bomb), np.zeros((12000, 12000), np.uint8), image)
        with pytest.raises(ValueError, match=r"^support_masks\[0\] \(.*\): the image is 12000 x 12000"):
            load_mask(str(bomb), "support_masks[0]")
    assert ntre_zoo.inference.image_io.MAX_PIXELS == 40_000_000


def test_the_pixel_cap_covers_every_input_form_and_can_be_raised(tiny_model):
    image, mask = _scene(h=40, w=50)  # 2000 pixels
    query = _scene(h=50, w=70, seed=1)[0]  # 3500 pixels
    huge = np.broadcast_to(np.zeros(3, np.uint8), (7000, 6000, 3))  # 42 megapixels, no memory of its own
    with pytest.raises(ValueError, match=r"query: the image is 6000 x 7000 pixels \(42\.0 megapixels\)"):
        load_image(huge, "query")
    for form in (query, Image.fromarray(query), torch.from_numpy(query).permute(2, 0, 1)):
        with pytest.raises(ValueError, match=r"query: the image is 70 x 50 pixels .* max_pixels=3499"):
            tiny_model.predict(image, mask, form, max_pixels=3499)
    with pytest.raises(ValueError, match=r"support_masks\[0\]: the image is 80 x 60"):
        tiny_model.encode_support(image, Image.new("L", (80, 60)), max_pixels=2000)
    with pytest.raises(ValueError, match=r"supports\['a'\]: support_imgs\[0\]: the image is 50 x 40"):
        tiny_model.segment(query, {"a": ([image], [mask])}, max_pixels=1999)
    expected = tiny_model.predict(image, mask, query)
    np.testing.assert_array_equal(tiny_model.predict(image, mask, query, max_pixels=3500), expected)
    np.testing.assert_array_equal(tiny_model.predict(image, mask, query, max_pixels=None), expected)
    for bad, error in [(0, ValueError), (2.5, TypeError), (True, TypeError)]:
        with pytest.raises(error, match="max_pixels must be"):
            tiny_model.predict(image, mask, query, max_pixels=bad)


# ------------------------------------------------------------------------------------------- NaN and infinity
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_images_and_masks_are_refused_with_argument_and_position(tiny_model, bad):
    image, mask = _scene()
    query = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    query[1, 3, 4] = bad
    with pytest.raises(ValueError, match=r"query: holds 1 non-finite value.* row 3, column 4"):
        tiny_model.predict(image, mask, query)
    support = image.astype(np.float32) / 255
    support[7, 2, 0] = bad
    with pytest.raises(ValueError, match=r"support_imgs\[1\]: holds 1 non-finite value.* row 7, column 2"):
        tiny_model.predict([image, support], [mask, mask], image)
    soft = mask.astype(np.float64)
    soft[0, 5] = bad
    with pytest.raises(ValueError, match=r"support_masks\[0\]: holds 1 non-finite value.* row 0, column 5"):
        tiny_model.predict(image, soft, image, mask_threshold=0.5)


# ------------------------------------------------------------------------------------------- EXIF orientation
def _save_rotated(path: Path, displayed: np.ndarray) -> None:
    """Store ``displayed`` as a phone does: pixels in sensor order, EXIF Orientation 6 (rotate 90 to view)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(displayed, k=1))).save(path, exif=exif)


def test_files_are_read_in_their_exif_orientation(tiny_model, tmp_path):
    image, mask = _scene(40, 60)
    _save_rotated(tmp_path / "photo.png", image)
    _save_rotated(tmp_path / "mask.png", mask * 255)
    with Image.open(tmp_path / "photo.png") as stored:
        assert stored.size == (40, 60)  # stored 60 x 40 (H x W), displayed 40 x 60
    loaded = load_image(tmp_path / "photo.png", "x").mul(255).round().byte().permute(1, 2, 0)
    np.testing.assert_array_equal(loaded.numpy(), image)
    np.testing.assert_array_equal(load_mask(tmp_path / "mask.png", "m").numpy(), mask)
    expected = tiny_model.predict(image, mask, image)
    # A mask drawn on the photo as people see it fits, and the answer comes back in the displayed orientation.
    np.testing.assert_array_equal(tiny_model.predict(tmp_path / "photo.png", mask, tmp_path / "photo.png"), expected)
    np.testing.assert_array_equal(tiny_model.predict(image, tmp_path / "mask.png", image), expected)


# ----------------------------------------------------------------------------------------- soft and RGB masks
def test_soft_masks_are_refused_with_the_values_found_and_accepted_with_a_threshold(tiny_model, tmp_path):
    image, mask = _scene()
    expected = tiny_model.predict(image, mask, image)
    soft = (mask * 255).astype(np.float32)
    soft[1:-1, 1:-1] = (soft[:-2, 1:-1] + soft[2:, 1:-1] + soft[1:-1, :-2] + soft[1:-1, 2:] + 4 * soft[1:-1, 1:-1]) / 8
    soft = soft.round().astype(np.uint8)  # anti-aliased edges: 64, 96, 128, ...
    with pytest.raises(
        ValueError, match=r"support_masks\[0\]: mask values .* found \[\d+.*distinct values in \[0, 255\].*"
    ):
        tiny_model.predict(image, soft, image)
    with pytest.raises(ValueError, match=r"mask_threshold=127"):
        tiny_model.predict(image, soft, image)
    binary = (soft > 127).astype(np.uint8)
    np.testing.assert_array_equal(
        tiny_model.predict(image, soft, image, mask_threshold=127), tiny_model.predict(image, binary, image)
    )
    Image.fromarray(mask * 255).save(tmp_path / "mask.jpg", quality=75)  # JPEG rings around the edges
    with pytest.raises(ValueError, match=r"found \[\d+"):
        tiny_model.predict(image, tmp_path / "mask.jpg", image)
    decoded = np.asarray(Image.open(tmp_path / "mask.jpg")) > 127
    np.testing.assert_array_equal(
        tiny_model.predict(image, tmp_path / "mask.jpg", image, mask_threshold=127),
        tiny_model.predict(image, decoded, image),
    )
    probabilities = mask * 0.9 + 0.05
    np.testing.assert_array_equal(tiny_model.predict(image, probabilities, image, mask_threshold=0.5), expected)
    support = tiny_model.encode_support(image, probabilities, mask_threshold=0.5)
    np.testing.assert_array_equal(tiny_model.predict(support, image), expected)
    with pytest.raises(TypeError, match="mask_threshold must be a number"):
        tiny_model.predict(image, soft, image, mask_threshold="half")
    with pytest.raises(ValueError, match=r"no target pixel above mask_threshold=254"):
        tiny_model.predict(image, mask, image, mask_threshold=254)


def test_grey_rgb_masks_are_accepted_and_colour_ones_refused_with_the_mode(tiny_model, tmp_path):
    image, mask = _scene()
    expected = tiny_model.predict(image, mask, image)
    Image.fromarray(mask * 255).convert("RGB").save(tmp_path / "grey.png")
    Image.fromarray(mask * 255).convert("RGBA").save(tmp_path / "grey_alpha.png")
    for grey in (tmp_path / "grey.png", tmp_path / "grey_alpha.png", np.repeat(mask[..., None], 3, axis=2)):
        np.testing.assert_array_equal(tiny_model.predict(image, grey, image), expected)
    colour = np.zeros((*mask.shape, 3), np.uint8)
    colour[mask == 1] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "red.png")
    with pytest.raises(ValueError, match=r"support_masks\[0\]: a mode 'RGB' image is a colour mask.*convert\('L'\)"):
        tiny_model.predict(image, tmp_path / "red.png", image)
    Image.fromarray(colour).convert("CMYK").save(tmp_path / "cmyk.jpg")
    with pytest.raises(ValueError, match=r"got mode 'CMYK'; convert it"):
        tiny_model.predict(image, Image.open(tmp_path / "cmyk.jpg"), image)


# ------------------------------------------------------------------------------- the threshold at its boundary
def test_a_pixel_exactly_at_the_threshold_is_background():
    """Target where the value is above ``mask_threshold`` (docs/predict.md): equal is not above."""
    assert load_mask(np.array([[126, 127, 128]], np.uint8), "m", 127).tolist() == [[0, 0, 1]]
    assert load_mask(np.array([[0.49, 0.5, 0.51]]), "m", 0.5).tolist() == [[0, 0, 1]]
    assert load_mask(torch.tensor([[0.0, 0.5, 1.0]]), "m", 0.5).tolist() == [[0, 0, 1]]


def test_a_pixel_a_hair_above_the_threshold_is_foreground():
    above = np.nextafter(0.5, 1.0)  # 0.5 + 1.1e-16: rounded to float32 it would be 0.5 again, not above
    assert load_mask(np.array([[0.5, above]]), "m", 0.5).tolist() == [[0, 1]]
    assert load_mask(np.array([[16_777_216, 16_777_217]], np.int64), "m", 16_777_216).tolist() == [[0, 1]]  # 2**24


def test_a_zero_threshold_makes_every_positive_pixel_target():
    assert load_mask(np.array([[0.0, 0.01, 0.7, 1.0]]), "m", 0).tolist() == [[0, 1, 1, 1]]
    assert load_mask(np.array([[0, 1, 3, 255]], np.uint8), "m", 0.0).tolist() == [[0, 1, 1, 1]]


def test_a_threshold_leaves_no_ignore_pixel():
    assert load_mask(np.array([[0, 1, 255]], np.uint8), "m", 0.5).tolist() == [[0, 1, 1]]


def test_mask_threshold_must_be_a_finite_number_and_not_a_bool():
    assert check_mask_threshold(None) is None
    assert check_mask_threshold(127) == 127.0 and isinstance(check_mask_threshold(127), float)
    for bad in (True, False, "0.5"):
        with pytest.raises(TypeError, match="mask_threshold must be a number"):
            check_mask_threshold(bad)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="mask_threshold must be a finite number"):
            check_mask_threshold(bad)


# ---------------------------------------------------------------------------------------- binary masks at the edges
def test_binary_masks_of_one_value_are_read_as_that_value():
    assert load_mask(np.zeros((2, 2), np.uint8), "m").tolist() == [[0, 0], [0, 0]]
    assert load_mask(np.full((2, 2), 255, np.uint8), "m").tolist() == [[1, 1], [1, 1]]  # 255 = target
    assert load_mask(np.ones((1, 1), bool), "m").tolist() == [[1]]


def test_a_zero_one_255_mask_keeps_255_as_ignore():
    assert load_mask(np.array([[0, 1, 255]], np.uint8), "m").tolist() == [[0, 1, 255]]


@pytest.mark.parametrize("shape", [(0, 4), (4, 0)])
def test_an_empty_mask_is_refused(shape):
    with pytest.raises(ValueError, match=r"at least 1x1 pixels"):
        load_mask(np.zeros(shape, np.uint8), "m")


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("size", [(5, 1), (1, 1), (1, 4)])
def test_a_one_pixel_high_or_wide_grey_rgb_mask_keeps_its_shape(mode, size):
    grey = np.zeros(size[::-1], np.uint8)
    grey[0, -1] = 255
    expected = (grey == 255).astype(np.int64)
    np.testing.assert_array_equal(load_mask(Image.fromarray(grey).convert(mode), "m").numpy(), expected)
