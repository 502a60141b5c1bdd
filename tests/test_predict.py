"""predict(): every input form, original-size output, the support cache, and clear errors on bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from ntre_zoo.data.preprocessing import canvas_shape


def _scene(h=50, w=70, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 5 : h // 2, w // 4 : w // 2] = 1
    return image, mask


def test_canvas_shape_follows_the_reference_test_resize():
    assert canvas_shape(375, 500, 473) == (352, 472)  # long side 473, both floored to multiples of 8
    assert canvas_shape(500, 500, 473) == (472, 472)
    assert canvas_shape(300, 200, 473) == (472, 312)  # a smaller image is enlarged (PFENet Resize, resized_val)


def test_single_query_gives_uint8_mask_at_original_size(tiny_model):
    image, mask = _scene()
    query, _ = _scene(37, 90, seed=1)
    result = tiny_model.predict(image, mask, query)
    assert result.dtype == np.uint8 and result.shape == (37, 90)
    assert set(np.unique(result)) <= {0, 1}


def test_every_image_and_mask_form_gives_the_same_prediction(tiny_model, tmp_path):
    image, mask = _scene()
    query, _ = _scene(seed=2)
    expected = tiny_model.predict(image, mask, query)
    Image.fromarray(image).save(tmp_path / "s.png")
    Image.fromarray(mask * 255).save(tmp_path / "m.png")
    palette = Image.fromarray(mask, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    forms = [
        (str(tmp_path / "s.png"), str(tmp_path / "m.png")),
        (tmp_path / "s.png", palette),
        (Image.fromarray(image), Image.fromarray(mask.astype(bool))),  # mode "1"
        (Image.fromarray(image).convert("RGBA"), mask.astype(bool)),
        (torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask)),
        (torch.from_numpy(image).permute(2, 0, 1).float() / 255, torch.from_numpy(mask * 255)),
        (image, mask[..., None]),
    ]
    for support_image, support_mask in forms:
        np.testing.assert_array_equal(tiny_model.predict(support_image, support_mask, query), expected)


def test_grayscale_and_16_bit_images_are_converted(tiny_model, tmp_path):
    image, mask = _scene()
    gray = image[..., 0]
    as_rgb = tiny_model.predict(np.repeat(gray[..., None], 3, axis=2), mask, image)
    np.testing.assert_array_equal(tiny_model.predict(gray, mask, image), as_rgb)
    np.testing.assert_array_equal(tiny_model.predict(Image.fromarray(gray, "L"), mask, image), as_rgb)
    sixteen = gray.astype(np.uint16) * 257  # the same intensities in 16 bits
    Image.fromarray(sixteen).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    np.testing.assert_array_equal(tiny_model.predict(tmp_path / "g16.png", mask, image), as_rgb)


def test_list_of_queries_reuses_the_supports(tiny_model):
    supports = [_scene(seed=s) for s in range(3)]
    images, masks = [s[0] for s in supports], [s[1] for s in supports]
    queries = [_scene(40 + 10 * i, 60, seed=10 + i)[0] for i in range(5)]
    batched = tiny_model.predict(images, masks, queries, batch_size=2)
    assert [r.shape for r in batched] == [q.shape[:2] for q in queries]
    one_by_one = [tiny_model.predict(images, masks, q) for q in queries]
    for a, b in zip(batched, one_by_one, strict=False):
        np.testing.assert_array_equal(a, b)
    support = tiny_model.encode_support(images, masks)
    for a, b in zip(tiny_model.predict(support, queries), one_by_one, strict=False):
        np.testing.assert_array_equal(a, b)


def test_details_hold_probability_bg_and_do_maps(tiny_model):
    image, mask = _scene()
    details = tiny_model.predict(image, mask, image, return_details=True)
    for array in (details.probability, details.bg_map, details.do_map):
        assert array.shape == (50, 70) and array.dtype == np.float32
        assert 0.0 <= array.min() and array.max() <= 1.0
    np.testing.assert_array_equal(details.mask, (details.probability > 0.5).astype(np.uint8))


def test_predict_restores_training_mode_and_leaves_no_grad(tiny_model):
    tiny_model.train()
    image, mask = _scene()
    tiny_model.predict(image, mask, image)
    assert tiny_model.training


def test_predict_is_deterministic_and_runs_under_autocast(tiny_model):
    image, mask = _scene()
    first = tiny_model.predict(image, mask, image, device="cpu")
    np.testing.assert_array_equal(tiny_model.predict(image, mask, image), first)
    bf16 = tiny_model.predict(image, mask, image, amp_dtype=torch.bfloat16, return_details=True)
    assert bf16.mask.shape == first.shape and bf16.probability.dtype == np.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tiny_model):
    image, mask = _scene()
    cpu = tiny_model.predict(image, mask, image, return_details=True)
    cuda = tiny_model.predict(image, mask, image, return_details=True, device="cuda")
    np.testing.assert_allclose(cuda.probability, cpu.probability, atol=1e-4)


@pytest.mark.parametrize(
    "support_image, support_mask, query, error, message",
    [
        (
            "IMG",
            np.zeros((10, 10), np.uint8) + 1,
            "IMG",
            ValueError,
            r"support_masks\[0\] is 10x10 but support_imgs\[0\] is 50x70",
        ),
        (["IMG", "IMG"], ["MASK"], "IMG", ValueError, r"2 support image\(s\) but 1 support mask"),
        ("IMG", "EMPTY", "IMG", ValueError, r"support_masks\[0\] has no target pixel"),
        ("IMG", "MASK", "/no/such/file.png", FileNotFoundError, r"query: no such file"),
        ("IMG", "MASK", np.zeros((5, 5, 3), np.int64), TypeError, r"query: unsupported image dtype"),
        ("IMG", "MASK", np.zeros((2, 5, 5, 3, 1), np.uint8), ValueError, r"query: a numpy image must have shape"),
        ("IMG", "MASK", np.full((5, 5, 3), 2.0), ValueError, r"query: a float image must be in \[0, 1\]"),
        ("IMG", "MASK", ["IMG", 42], TypeError, r"query\[1\]: expected a file path"),
        ("IMG", np.full((50, 70), 7, np.uint8), "IMG", ValueError, r"support_masks\[0\]: mask values .* found \[7\]"),
        (
            "IMG",
            np.zeros((50, 70, 2), np.uint8),
            "IMG",
            ValueError,
            r"support_masks\[0\]: a mask must have shape \(H, W\)",
        ),
        (
            torch.zeros(2, 50, 70),
            "MASK",
            "IMG",
            ValueError,
            r"support_imgs\[0\]: a tensor image must have shape \(3, H, W\)",
        ),
        ("IMG", "MASK", None, ValueError, r"query is required"),
    ],
)
def test_bad_inputs_name_the_argument(tiny_model, support_image, support_mask, query, error, message):
    image, mask = _scene()
    empty = np.zeros_like(mask)
    subst = {"IMG": image, "MASK": mask, "EMPTY": empty}

    def fill(value):
        if isinstance(value, list):
            return [fill(v) for v in value]
        return subst.get(value, value) if isinstance(value, str) else value

    with pytest.raises(error, match=message):
        tiny_model.predict(fill(support_image), fill(support_mask), fill(query))


def test_unreadable_file_is_a_clear_error(tiny_model, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    image, mask = _scene()
    with pytest.raises(ValueError, match=r"support_imgs\[0\]: cannot read"):
        tiny_model.predict(bad, mask, image)
