"""Hardening (issue 12): bounded memory, refused non-finite inputs, vanishing supports, EXIF, soft and RGB
masks, atomic saves under kills, file modes, kept model cards, thread-safe predict, clear errors and hints."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_model
from data_fixtures import grey_png
from hub_server import HubServer
from PIL import Image

import ntre_zoo
from ntre_zoo.cli import main as cli_main
from ntre_zoo.data import preprocessing
from ntre_zoo.data.preprocessing import logits_to_original
from ntre_zoo.data.splits import custom_split
from ntre_zoo.errors import WeightsUnavailableError
from ntre_zoo.inference.image_io import load_image, load_mask
from ntre_zoo.model.config import ModelConfig
from ntre_zoo.zoo.saving import save_pretrained


def _scene(h=50, w=70, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 5 : h // 2, w // 4 : w // 2] = 1
    return image, mask


def _square_then_crop(logits, h, w):
    """What logits_to_original computed before: the whole max(h, w) square, then its top-left."""
    side = max(h, w)
    return F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=True)[..., :h, :w]


@contextlib.contextmanager
def _address_space_limit(extra_bytes: int):
    """Let this process map at most ``extra_bytes`` more memory (allocations beyond fail with an error)."""
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    server = HubServer()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.stop()


# ------------------------------------------------------------------------------ 1. memory of thin images
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


# ------------------------------------------------------------------------------ 2. NaN and infinity
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


# ------------------------------------------------------------------------------ 3. vanishing support target
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


# ------------------------------------------------------------------------------ 4. EXIF orientation
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


# ------------------------------------------------------------------------------ 5. soft and RGB masks
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


# ------------------------------------------------------------------------------ 6. atomic saves under kills
#: The calls through which a save into an existing directory changes files: every moment a kill can tell
#: apart lies just before or just after one of them (between two of them the files do not change).
_FILE_CALLS = {"open", "serialize_file", "write", "__exit__", "chmod", "replace", "unlink", "fsync"}


def _file_call_profiler(moment: int | None, seen: list[int]):
    """A ``sys.setprofile`` function counting the boundaries of file calls; SIGKILL at boundary ``moment``."""

    def profile(frame, event, arg):
        if event in ("c_call", "c_return") and getattr(arg, "__name__", "") in _FILE_CALLS:
            seen[0] += 1
            if seen[0] == moment:
                os.kill(os.getpid(), signal.SIGKILL)

    return profile


def _save_killed_at(model, directory: Path, moment: int) -> bool:
    """Save in a forked child that SIGKILLs itself at file-call boundary ``moment``; True if it was killed."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        sys.setprofile(_file_call_profiler(moment, [0]))
        try:
            save_pretrained(model, directory)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


def _state_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_save_killed_at_any_moment_leaves_the_old_model_or_the_new_one(tmp_path):
    """A kill before or after each call that touches a file (every state a kill can leave) is followed by a
    load that gives the old model or the new one, and the next save removes what the killed one left."""
    old = make_tiny_model(seed=1)
    new = make_tiny_model(seed=2, reduce_dim=8, test_size=97)  # another architecture and preprocessing
    save_pretrained(old, tmp_path / "old")
    shutil.copytree(tmp_path / "old", tmp_path / "dry")
    seen = [0]
    sys.setprofile(_file_call_profiler(None, seen))
    try:
        save_pretrained(new, tmp_path / "dry")
    finally:
        sys.setprofile(None)
    outcomes = dict.fromkeys(["old", "new", "new weights, old config.json", "temporary files removed"], 0)
    for moment in range(1, seen[0] + 1):
        directory = shutil.copytree(tmp_path / "old", tmp_path / f"kill{moment}")
        assert _save_killed_at(new, directory, moment), moment
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            loaded = ntre_zoo.from_pretrained(directory)
        expected = new if loaded.config == new.config else old
        assert loaded.config in (old.config, new.config) and _state_equal(loaded, expected), moment
        written = json.loads((directory / "config.json").read_text())["model_config"]["reduce_dim"]
        outcomes[
            "new weights, old config.json" if expected is new and written == 16 else "new" if expected is new else "old"
        ] += 1
        if any(p.name.startswith(".") for p in directory.iterdir()):
            save_pretrained(new, directory)  # the next save removes the temporary files the killed one left
            assert sorted(p.name for p in directory.iterdir()) == ["README.md", "config.json", "model.safetensors"]
            outcomes["temporary files removed"] += 1
    # The kills hit before, between and after the switch, including the moment between the two renames.
    assert all(outcomes.values()), outcomes


# ------------------------------------------------------------------------------ 7. file modes, permission denied
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_every_saved_file_follows_the_umask(tiny_model, tmp_path, umask):
    previous = os.umask(umask)
    try:
        directory = save_pretrained(tiny_model, tmp_path / "model")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}
    assert modes == dict.fromkeys(["README.md", "config.json", "model.safetensors"], 0o666 & ~umask)


def _as_another_user(action) -> str:
    """Run ``action()`` as a user who does not own the files (a forked child as ``nobody`` when root);
    return the type and message of what it raised."""
    if os.geteuid() != 0:
        try:
            action()
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        return "no error"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.close(read)
        try:
            os.setgid(65534)
            os.setuid(65534)
            action()
            result = "no error"
        except BaseException as error:
            result = f"{type(error).__name__}: {error}"
        os.write(write, result.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        result = pipe.read()
    os.waitpid(pid, 0)
    return result


@pytest.mark.parametrize("unreadable", ["model.safetensors", "config.json"])
def test_an_unreadable_file_says_permission_denied(tiny_model, unreadable):
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        directory = save_pretrained(tiny_model, Path(tmp) / "model")
        os.chmod(directory / unreadable, 0o600 if os.geteuid() == 0 else 0o000)
        outcome = _as_another_user(lambda: ntre_zoo.from_pretrained(directory))
    assert outcome.startswith("PermissionError") and "permission denied" in outcome, outcome
    assert unreadable in outcome and "No such file" not in outcome


def test_a_hub_cache_this_user_cannot_write_says_permission_denied(hub, tiny_model):
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        saved = save_pretrained(tiny_model, Path(tmp) / "upload")
        hub.add_commit("me/tiny", {p.name: p.read_bytes() for p in saved.iterdir()})
        cache = Path(tmp) / "cache"
        cache.mkdir(mode=0o555 if os.geteuid() != 0 else 0o755)
        outcome = _as_another_user(lambda: ntre_zoo.from_pretrained("hf-hub:me/tiny", cache_dir=cache, token="x"))
    assert outcome.startswith("PermissionError: Permission denied on") and "cache_dir=" in outcome, outcome


# ------------------------------------------------------------------------------ 8. the user's README.md
def test_a_readme_the_user_wrote_or_edited_is_kept(tiny_model, tmp_path):
    (tmp_path / "README.md").write_text("# My model\n\nNotes I wrote.\n")
    with pytest.warns(UserWarning, match="was not written by ntre-zoo"):
        save_pretrained(tiny_model, tmp_path)
    assert (tmp_path / "README.md").read_text() == "# My model\n\nNotes I wrote.\n"
    assert ntre_zoo.from_pretrained(tmp_path).config == tiny_model.config

    other = tmp_path / "ours"
    save_pretrained(tiny_model, other, metadata={"dataset": "pascal5i", "fold": 0})
    save_pretrained(tiny_model, other, metadata={"dataset": "pascal5i", "fold": 1})  # ours: replaced
    assert "Fold: 1" in (other / "README.md").read_text()
    edited = (other / "README.md").read_text().replace("Fold: 1", "Fold: 1 (trained on my cluster)")
    (other / "README.md").write_text(edited)
    with pytest.warns(UserWarning, match="or was edited since"):
        save_pretrained(tiny_model, other, metadata={"dataset": "pascal5i", "fold": 2})
    assert (other / "README.md").read_text() == edited


# ------------------------------------------------------------------------------ 9. threads
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


# ------------------------------------------------------------------------------ 10. sentences, not tracebacks
def test_evaluate_output_that_is_a_directory_is_refused_before_evaluating(tmp_path, capsys, monkeypatch):
    import ntre_zoo.evaluation.loop as loop

    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: pytest.fail("evaluated before checking --output"))
    code = cli_main(
        [
            *("evaluate", "ntrenet_tiny.synthetic_fold0", "--dataset", "pascal5i", "--data-root", str(tmp_path)),
            *("--output", str(tmp_path), "--no-progress"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "--output" in err and "is a directory" in err, err


@pytest.mark.parametrize(
    "edit, error, message",
    [
        (lambda c: "{not json", ValueError, "is not valid JSON"),
        (lambda c: c.update(shot="1"), TypeError, r"ModelConfig.shot must be an integer, got '1' \(str\)"),
        (lambda c: c.update(bg_eliminating="false"), TypeError, "bg_eliminating must be true or false, got 'false'"),
        (lambda c: c.update(std=[0.229, 0, 0.225]), ValueError, "std must be positive"),
        (lambda c: c.update(test_size=473.5), TypeError, "test_size must be an integer, got 473.5"),
        (lambda c: c.pop("test_size"), ValueError, "with test_size"),
        (lambda c: c.update(pyramid_bins=[60, 30.5]), ValueError, "whole sizes > 1"),
        (lambda c: c.update(backbone={"name": "resnet50", "layers": [1, 1, 1.5, 1]}), TypeError, r"layers\[2\]"),
    ],
)
def test_a_bad_config_json_names_the_file_and_the_value(tiny_model, tmp_path, edit, error, message):
    save_pretrained(tiny_model, tmp_path)
    path = tmp_path / "config.json"
    config = json.loads(path.read_text())
    text = edit(config["model_config"])
    path.write_text(text if isinstance(text, str) else json.dumps(config))  # an edit: read, not overruled
    with pytest.raises(error, match=message) as raised:
        ntre_zoo.from_pretrained(tmp_path)
    assert "config.json" in str(raised.value)


def test_model_config_checks_types_when_built():
    with pytest.raises(TypeError, match=r"ModelConfig\.shot must be an integer"):
        ModelConfig(shot="1")
    with pytest.raises(TypeError, match="do_eliminating must be true or false"):
        ModelConfig(do_eliminating=1)
    with pytest.raises(ValueError, match="reduce_dropout must be in"):
        ModelConfig(reduce_dropout=1.5)
    with pytest.raises(TypeError, match="mean must be a list"):
        ModelConfig(mean=0.5)
    assert ModelConfig(test_size=np.int64(97), pyramid_bins=[8.0, 0.5]).pyramid_bins == (8, 0.5)


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


def test_evaluate_names_bad_device_amp_dtype_and_batch_size(tiny_model):
    from ntre_zoo.evaluation import evaluate

    for kwargs, error, message in [
        ({"device": "bogus"}, ValueError, "device='bogus'"),
        ({"amp_dtype": torch.int8}, TypeError, "amp_dtype must be"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an integer"),
    ]:
        with pytest.raises(error, match=message):
            evaluate(tiny_model, dataset=None, **kwargs)


# ------------------------------------------------------------------------------ 11. hints
def test_the_folder_dataset_hint_speaks_cli_and_python():
    with pytest.raises(ValueError, match=r"`--novel-classes 1 2` on the command line.*novel_classes=\(1, 2\)"):
        custom_split([1, 2, 3], None)


def test_a_training_output_directory_points_at_best_and_last(tiny_model, tmp_path):
    for sub in ("best", "last"):
        save_pretrained(tiny_model, tmp_path / "runs" / "x" / sub)
    with pytest.raises(FileNotFoundError, match=r"training run's output directory.*x/best.*x/last"):
        ntre_zoo.from_pretrained(str(tmp_path / "runs" / "x"))


def test_the_offline_hint_names_a_download_command_that_accepts_hf_hub_ids(hub, tiny_model, tmp_path, capsys):
    saved = save_pretrained(tiny_model, tmp_path / "upload")
    hub.add_commit("me/tiny", {p.name: p.read_bytes() for p in saved.iterdir()})
    cache = tmp_path / "cache"
    with pytest.raises(WeightsUnavailableError, match="`ntre-zoo download hf-hub:me/tiny`") as raised:
        ntre_zoo.from_pretrained("hf-hub:me/tiny", cache_dir=cache, local_files_only=True)
    command = str(raised.value).split("`")[1].split()
    assert cli_main([*command[1:], "--cache-dir", str(cache)]) == 0
    assert "cached" in capsys.readouterr().out
    loaded = ntre_zoo.from_pretrained("hf-hub:me/tiny", cache_dir=cache, local_files_only=True)
    assert _state_equal(loaded, tiny_model)


def test_a_corrupt_reproduce_ledger_names_the_file(tmp_path):
    from ntre_zoo.pipeline.reproduce import _Ledger

    ledger = tmp_path / "ledger.json"
    for text in ('{"format": "ntre-zoo-reproduce-ledger", "vari', "[1, 2]", "\udcff"):
        ledger.write_text(text, encoding="utf-8", errors="surrogateescape")
        with pytest.raises(ValueError, match=r"ledger\.json' is not a (readable )?reproduce ledger"):
            _Ledger(ledger)
