"""predict(): every input form, original-size output (in tiles, in memory of the results' size), the support
cache, supports too small at the test size, thread safety, and clear errors on bad input and options."""

import copy
import sys
import threading

import golden_cases
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import address_space_limit as _address_space_limit
from conftest import make_tiny_model
from data_fixtures import scene as _scene
from PIL import Image

import ntre_zoo
from ntre_zoo.data import preprocessing
from ntre_zoo.data.preprocessing import canvas_shape, logits_to_original
from ntre_zoo.zoo.saving import save_pretrained


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


def _probability(model, *args, **kwargs):
    """predict's target probability: unlike the random tiny model's masks (all background), it shows any
    change of input."""
    details = model.predict(*args, return_details=True, **kwargs)
    return [d.probability for d in details] if isinstance(details, list) else details.probability


def _assert_same(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_every_image_and_mask_form_gives_the_same_prediction(tiny_model, tmp_path):
    image, mask = _scene()
    query, _ = _scene(seed=2)
    expected = _probability(tiny_model, image, mask, query)
    moved = _probability(tiny_model, image, np.roll(mask, 10, axis=1), query)
    assert np.abs(moved - expected).max() > 1e-3  # another mask shows
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
        _assert_same(_probability(tiny_model, support_image, support_mask, query), expected)


def test_grayscale_and_16_bit_images_are_converted(tiny_model, tmp_path):
    image, mask = _scene()
    gray = image[..., 0]
    as_rgb = _probability(tiny_model, np.repeat(gray[..., None], 3, axis=2), mask, image)
    assert np.abs(as_rgb - _probability(tiny_model, image, mask, image)).max() > 1e-3  # colour shows
    _assert_same(_probability(tiny_model, gray, mask, image), as_rgb)
    _assert_same(_probability(tiny_model, Image.fromarray(gray, "L"), mask, image), as_rgb)
    sixteen = gray.astype(np.uint16) * 257  # the same intensities in 16 bits
    Image.fromarray(sixteen).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    _assert_same(_probability(tiny_model, tmp_path / "g16.png", mask, image), as_rgb)


def test_list_of_queries_reuses_the_supports(tiny_model):
    supports = [_scene(seed=s) for s in range(3)]
    images, masks = [s[0] for s in supports], [s[1] for s in supports]
    queries = [_scene(40 + 10 * i, 60, seed=10 + i)[0] for i in range(5)]
    batched = _probability(tiny_model, images, masks, queries, batch_size=2)
    assert [r.shape for r in batched] == [q.shape[:2] for q in queries]
    one_by_one = [_probability(tiny_model, images, masks, q) for q in queries]
    for a, b in zip(batched, one_by_one, strict=True):
        _assert_same(a, b)
    support = tiny_model.encode_support(images, masks)
    for a, b in zip(_probability(tiny_model, support, queries), one_by_one, strict=True):
        _assert_same(a, b)
    first_only = _probability(tiny_model, images[:1], masks[:1], queries[0])
    assert np.abs(first_only - one_by_one[0]).max() > 1e-3  # all three shots count
    masks_out = tiny_model.predict(support, queries)
    assert [m.shape for m in masks_out] == [q.shape[:2] for q in queries] and masks_out[0].dtype == np.uint8


@pytest.fixture(scope="module")
def shipped():
    """The trained shipped model: its predictions are neither empty nor full, so the crop is visible."""
    return ntre_zoo.from_pretrained("ntrenet_tiny.synthetic_fold0")


def _capture(model):
    """Forward outputs of ``model`` collected while the returned hook is registered."""
    outputs = []
    return outputs, model.register_forward_hook(lambda module, args, output: outputs.append(output))


@pytest.mark.parametrize("size", [(157, 111), (111, 157), (131, 131)])
def test_maps_are_the_canvas_logits_upsampled_to_the_long_side_and_cropped(shipped, size):
    """Spec section 8: logits (bilinear, align_corners=True) to L x L, L = max(h, w), then the top-left h x w;
    the mask is their argmax, the probability their softmax, BG and DO maps the same mapping of their maps."""
    episode = golden_cases.shipped_episode()
    h, w = size
    scene = episode["query"] if h >= w else episode["query"].transpose(1, 0, 2)  # 181 x 147, or 147 x 181
    query = np.ascontiguousarray(scene[:h, :w])
    outputs, hook = _capture(shipped)
    try:
        details = shipped.predict(
            episode["support"], episode["support_mask"], query, return_details=True, precision="fp32"
        )
    finally:
        hook.remove()
    (out,) = outputs
    side = max(h, w)

    def to_original(maps):
        return F.interpolate(maps.float(), size=(side, side), mode="bilinear", align_corners=True)[0, :, :h, :w]

    logits = to_original(out.logits)
    probability = logits.softmax(dim=0)[1]
    assert details.mask.shape == details.probability.shape == details.bg_map.shape == details.do_map.shape == size
    np.testing.assert_allclose(details.probability, probability.numpy(), rtol=0, atol=1e-5)
    decided = (logits[1] - logits[0]).abs() > 1e-4  # pixels whose argmax float rounding cannot flip
    assert decided.float().mean() > 0.99
    expected_mask = logits.argmax(dim=0).to(torch.uint8).numpy()
    np.testing.assert_array_equal(details.mask[decided.numpy()], expected_mask[decided.numpy()])
    assert 0.03 < details.mask.mean() < 0.5  # a real segmentation, so a misplaced crop moves pixels
    canvas = out.logits.shape[-2:]
    bg = to_original(
        F.interpolate(out.bg_logits.softmax(dim=1)[:, 1:], size=canvas, mode="bilinear", align_corners=True)
    )
    np.testing.assert_allclose(details.bg_map, bg[0].numpy(), rtol=0, atol=1e-5)
    do = torch.stack([F.interpolate(m, size=canvas, mode="bilinear", align_corners=True) for m in out.do_masks])
    np.testing.assert_allclose(details.do_map, to_original(do.mean(dim=0))[0].numpy(), rtol=0, atol=1e-5)


def test_predict_restores_training_mode_and_runs_as_in_eval_mode_without_autograd(tiny_model):
    """In train mode, predict gives the eval-mode result (no dropout, BN running statistics), records no
    graph and leaves the model in train mode."""
    image, mask = _scene()
    query, _ = _scene(seed=3)
    expected = tiny_model.predict(image, mask, query, return_details=True)
    seen = []
    tiny_model.register_forward_hook(
        lambda module, args, output: seen.append(
            (module.training, torch.is_grad_enabled(), output.logits.requires_grad)
        )
    )
    tiny_model.train()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    got = tiny_model.predict(image, mask, query, return_details=True)
    assert tiny_model.training
    assert seen == [(False, False, False)]
    np.testing.assert_array_equal(got.probability, expected.probability)
    assert all(p.grad is None for p in tiny_model.parameters())
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())  # BN statistics untouched


def test_bf16_runs_the_network_under_autocast(tiny_model):
    image, mask = _scene()
    dtypes = []
    tiny_model.fuse.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    fp32 = tiny_model.predict(image, mask, image, precision="fp32", return_details=True)
    bf16 = tiny_model.predict(image, mask, image, precision="bf16", return_details=True)
    assert dtypes == [torch.float32, torch.bfloat16]
    assert bf16.probability.dtype == np.float32 and bf16.mask.shape == fp32.mask.shape
    difference = np.abs(bf16.probability - fp32.probability).max()
    assert 0 < difference < 0.05  # bf16 rounding: close to fp32, not equal to it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tiny_model, monkeypatch):
    """fp32 on both sides; cuDNN's TF32 convolutions (10-bit mantissa) move probabilities by up to ~1e-3, so the
    tolerance is sized for TF32 and, with TF32 off, for plain fp32 reduction order."""
    image, mask = _scene()
    cpu = tiny_model.predict(image, mask, image, return_details=True, precision="fp32")
    for tf32, atol in ((True, 5e-3), (False, 1e-4)):
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", tf32)
        cuda = tiny_model.predict(image, mask, image, return_details=True, device="cuda", precision="fp32")
        np.testing.assert_allclose(cuda.probability, cpu.probability, atol=atol)
        tiny_model.to("cpu")


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


# -------------------------------------------------------------------------------- the original size, in tiles
def _square_then_crop(logits, h, w):
    """What logits_to_original computed before: the whole max(h, w) square, then its top-left."""
    side = max(h, w)
    return F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=True)[..., :h, :w]


@pytest.mark.parametrize("canvas", [65, 473])
def test_upsampling_in_tiles_equals_the_square_then_crop(canvas):
    """Maps come back to the image's size in tiles; wherever the image is enlarged (any query larger than the
    canvas) and up to a 1:4 aspect ratio the tiles hold the reference's square computation bit for bit, whatever
    the memory layout; a map that shrinks, or a thinner one (its kept rectangle only), is equal up to float
    rounding with the same argmax."""
    torch.manual_seed(canvas)
    logits = torch.randn(2, 2, canvas, canvas) * 4
    sizes = [(375, 500), (500, 375), (50, 70), (473, 473), (1, 1), (1, 3), (64, 200), (200, 64), (600, 5), (900, 700)]
    for layout in (torch.contiguous_format, torch.channels_last):
        maps = logits.contiguous(memory_format=layout)
        for h, w in sizes:
            square = _square_then_crop(maps, h, w)
            assert torch.equal(logits_to_original(maps, h, w), square), (h, w)  # one tile: as before
            for tile_values in (5000, 1):
                tiled = torch.cat([t for _, t in preprocessing.original_tiles(maps, h, w, tile_values=tile_values)], -1)
                if max(h, w) >= canvas and max(h, w) ** 2 <= preprocessing.SQUARE_BUDGET * h * w:
                    assert torch.equal(tiled, square), (h, w, tile_values)
                else:
                    torch.testing.assert_close(tiled, square, rtol=0, atol=1e-5)
                    assert torch.equal(tiled.argmax(dim=1), square.argmax(dim=1)), (h, w, tile_values)
            direct = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=True)
            small = torch.cat([t for _, t in preprocessing.original_tiles(maps, h, w, "square", tile_values=5000)], -1)
            torch.testing.assert_close(small, direct, rtol=0, atol=1e-5)
            if min(h, w) >= canvas:
                assert torch.equal(small, direct), (h, w)


def test_predict_in_tiles_gives_the_masks_and_maps_of_the_square(monkeypatch):
    """A query large enough to be tiled gets the mask, BG and DO maps of the square computation bit for bit
    and its probability within one float rounding (softmax on a tile rounds like softmax on the whole)."""
    model = ntre_zoo.from_pretrained("ntrenet_tiny.synthetic_fold0")
    image, mask = _scene(h=200, w=170)
    query = np.asarray(Image.fromarray(_scene(h=50, w=40, seed=3)[0]).resize((500, 620)))
    whole = model.predict(image, mask, query, precision="fp32", return_details=True)
    monkeypatch.setattr(preprocessing, "TILE_VALUES", 20000)  # many bands of a few columns each
    tiled = model.predict(image, mask, query, precision="fp32", return_details=True)
    for name in ("mask", "bg_map", "do_map"):
        np.testing.assert_array_equal(getattr(tiled, name), getattr(whole, name), err_msg=name)
    np.testing.assert_allclose(tiled.probability, whole.probability, rtol=0, atol=2e-7)
    assert 0 < whole.mask.mean() < 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="measures the address space in /proc")
def test_a_large_query_needs_memory_for_its_results_only(tiny_model):
    """A 2000 x 6000 query with details: the mask and the three float maps take 156 MB; the square of the
    logits (288 MB), its softmax and the BG and DO squares (144 MB each) are never made."""
    image, mask = _scene()
    query = np.broadcast_to(np.arange(6000, dtype=np.uint8)[None, :, None], (2000, 6000, 3))  # no memory of its own
    with _address_space_limit(400 << 20):
        details = tiny_model.predict(image, mask, query, return_details=True, precision="fp32")
    assert details.mask.shape == details.probability.shape == details.do_map.shape == (2000, 6000)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="measures the address space in /proc")
def test_a_thin_image_needs_memory_of_its_own_size(tiny_model):
    """A 100000 x 4 map used to ask for a 100000^2 square (80 GB); now it fits in the image's own size."""
    image, mask = _scene()
    query = np.random.default_rng(1).integers(0, 256, (30000, 3, 3), dtype=np.uint8)  # square: 7 GB of logits
    with _address_space_limit(1 << 30):
        for h, w in [(100000, 4), (4, 100000)]:
            assert logits_to_original(torch.randn(1, 2, 65, 65), h, w).shape == (1, 2, h, w)
        details = tiny_model.predict(image, mask, query, return_details=True)
    assert details.mask.shape == details.probability.shape == details.bg_map.shape == (30000, 3)


# --------------------------------------------------------------------------------------------------- supports
def test_a_support_target_that_vanishes_at_the_test_size_is_refused(tiny_model):
    image = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    mask = np.zeros((400, 400), np.uint8)
    mask[3:5, 3:5] = 1  # 4 pixels: nothing of them survives the resize to 65 and the 9x9 feature map
    with pytest.raises(ValueError, match=r"support_masks\[1\]: the target \(4 pixel\(s\) of a 400x400 image\) is too"):
        tiny_model.predict([image, image], [np.pad(np.ones((200, 200), np.uint8), 100), mask], image)
    with pytest.raises(ValueError, match="crop the support image around it"):
        tiny_model.encode_support(image, mask)
    mask[3:60, 3:60] = 1  # large enough to survive
    assert tiny_model.predict(image, mask, image).shape == (400, 400)


# ---------------------------------------------------------------------------------------------------- threads
def test_predict_never_modifies_the_model_and_is_thread_safe(tiny_model):
    image, mask = _scene()
    queries = [_scene(seed=s)[0] for s in range(2)]
    expected = [copy.deepcopy(tiny_model).eval().predict(image, mask, q, return_details=True) for q in queries]
    tiny_model.train()
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    failures, stop = [], threading.Event()

    def predict_many():
        for _ in range(3):
            for query, want in zip(queries, expected, strict=True):
                got = tiny_model.predict(image, mask, query, return_details=True)
                if not np.array_equal(got.probability, want.probability):
                    failures.append("different answer")

    def flip_modes():  # another thread using the model for training-style calls
        while not stop.is_set():
            tiny_model.train()
            tiny_model.eval()
            tiny_model.train()

    threads = [threading.Thread(target=predict_many) for _ in range(3)]
    flipper = threading.Thread(target=flip_modes)
    for thread in [*threads, flipper]:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    flipper.join()
    assert not failures, f"{len(failures)} of 18 calls differed"
    assert all(module.training for module in tiny_model.modules())  # its own mode, as the flipper left it
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(value, state[key]), f"{key} changed"


# ------------------------------------------------------------------------------------------------ bad options
def test_bad_device_amp_dtype_batch_size_and_foreign_support_are_named(tiny_model, tmp_path):
    image, mask = _scene()
    with pytest.raises(ValueError, match="device='bogus' is not a torch device"):
        tiny_model.predict(image, mask, image, device="bogus")
    save_pretrained(tiny_model, tmp_path)
    with pytest.raises(ValueError, match="device='bogus'"):
        ntre_zoo.from_pretrained(tmp_path, device="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="0 usable CUDA device"):
            tiny_model.predict(image, mask, image, device="cuda")
    for dtype in (torch.int8, "bf16", torch.float32):
        with pytest.raises(TypeError, match=r"amp_dtype must be torch\.bfloat16 or torch\.float16"):
            tiny_model.predict(image, mask, image, amp_dtype=dtype)
    for size in (2.5, "2", True):
        with pytest.raises(TypeError, match="batch_size must be an integer"):
            tiny_model.predict(image, mask, [image, image], batch_size=size)
    for other in (make_tiny_model(reduce_dim=8), make_tiny_model(channels=(8, 16, 32, 32))):
        support = other.encode_support(image, mask)
        with pytest.raises(ValueError, match="encoded by a different model"):
            tiny_model.predict(support, image)
