"""A property test of ``predict``: random shapes, dtypes, value ranges and sizes either give masks of the
queries' sizes or raise ValueError/TypeError/FileNotFoundError naming the argument, never anything else."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_tiny_model
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ARGUMENTS = ("support_imgs", "support_masks", "query", "batch_size", "mask_threshold")
DTYPES = (np.uint8, np.uint16, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64)
#: A 33-pixel canvas keeps each call to a few milliseconds.
MODEL = make_tiny_model(seed=0, test_size=33)


@st.composite
def chaos(draw, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Any rank 0-4 (sides from 0), any dtype, any value range, sometimes NaN or infinity."""
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = draw(
        st.sampled_from(
            [
                lambda: rng.integers(0, 3, shape),
                lambda: rng.integers(0, 256, shape),
                lambda: rng.random(shape),
                lambda: rng.normal(0, 1000, shape),
            ]
        )
    )()
    dtype = draw(st.sampled_from(DTYPES))
    array = values > 0.5 if dtype is np.bool_ else values.astype(dtype)
    if array.size and np.issubdtype(array.dtype, np.floating) and draw(st.booleans()):
        array.flat[draw(st.integers(0, array.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return array


@st.composite
def image_array(draw, h: int, w: int) -> np.ndarray:
    """A valid image: uint8, uint16 or float in [0, 1]; gray, RGB or RGBA."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = draw(st.sampled_from([(h, w), (h, w, 3), (h, w, 4), (h, w, 1)]))
    return draw(
        st.sampled_from(
            [
                lambda: rng.integers(0, 256, shape).astype(np.uint8),
                lambda: rng.integers(0, 65536, shape).astype(np.uint16),
                lambda: rng.random(shape).astype(draw(st.sampled_from([np.float16, np.float32, np.float64]))),
            ]
        )
    )()


@st.composite
def mask_array(draw, h: int, w: int) -> np.ndarray:
    """A valid mask whose target (at least a quarter of each side) survives the resize: bool, {0, 1} or
    {0, 255}, or a soft one (pass mask_threshold)."""
    mask = np.zeros((h, w), np.uint8)
    y, x = draw(st.integers(0, h - (h + 3) // 4)), draw(st.integers(0, w - (w + 3) // 4))
    mask[y : y + max(1, h // 2), x : x + max(1, w // 2)] = 1
    return draw(st.sampled_from([mask, mask.astype(bool), mask * 255, mask * 200 + 20, mask.astype(np.float32)]))


def as_form(draw, array: np.ndarray, mask: bool):
    """The array as numpy, a tensor (images channels first), or a PIL image."""
    form = draw(st.sampled_from(["numpy", "tensor", "pil"]))
    if form == "tensor" and array.dtype != np.uint16:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor.permute(2, 0, 1) if tensor.dim() == 3 and not mask else tensor
    if form == "pil" and array.dtype == np.uint8 and array.ndim in (2, 3) and array.size:
        return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] not in (3, 4) else array)
    return array


@st.composite
def scene(draw, with_mask: bool = True):
    """An image (and its mask): valid most of the time, else one argument replaced by something wrong."""
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    image, mask = draw(image_array(h, w)), draw(mask_array(h, w))
    broken = draw(st.sampled_from(["none"] * 6 + ["image", "mask", "size", "other"]))
    if broken == "image":
        image = draw(st.one_of(chaos(), chaos(image.shape)))
    elif broken == "mask":
        mask = draw(st.one_of(chaos(), chaos(mask.shape)))
    elif broken == "size":
        mask = draw(mask_array(draw(st.integers(1, 48)), draw(st.integers(1, 48))))
    elif broken == "other":
        image = draw(st.sampled_from([None, 3, "/no/such/image.png", b"bytes", [[0, 1], [1, 0]]]))
    image = image if not isinstance(image, np.ndarray) else as_form(draw, image, mask=False)
    return (image, as_form(draw, mask, mask=True)) if with_mask else image


def _size(value) -> tuple[int, int] | None:
    """The (H, W) a successful prediction must have for a query value."""
    if isinstance(value, Image.Image):
        return value.height, value.width
    if isinstance(value, torch.Tensor):
        return tuple(value.shape[-2:])
    if isinstance(value, np.ndarray):
        return tuple(value.shape[:2])
    return None


@settings(
    max_examples=60,
    deadline=5000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    supports=st.lists(scene(), min_size=1, max_size=3),
    query=st.one_of(scene(with_mask=False), st.lists(scene(with_mask=False), min_size=1, max_size=3)),
    batch_size=st.sampled_from([1, 2, 4, 4, 0, 2.5]),
    mask_threshold=st.sampled_from([None] * 6 + [0.5, 127, "half", float("nan")]),
    details=st.booleans(),
)
def test_predict_returns_masks_or_names_the_bad_argument(supports, query, batch_size, mask_threshold, details):
    support_imgs, support_masks = [s[0] for s in supports], [s[1] for s in supports]
    options = {"batch_size": batch_size, "return_details": details}
    if mask_threshold is not None:
        options["mask_threshold"] = mask_threshold
    try:
        result = MODEL.predict(support_imgs, support_masks, query, **options)
    except (ValueError, TypeError, FileNotFoundError) as error:
        assert any(name in str(error) for name in ARGUMENTS), f"{type(error).__name__} names no argument: {error}"
        return
    results, queries = (result, query) if isinstance(query, list) else ([result], [query])
    assert len(results) == len(queries)
    for got, value in zip(results, queries, strict=True):
        mask = got.mask if details else got
        assert mask.dtype == np.uint8 and mask.shape == _size(value) and set(np.unique(mask)) <= {0, 1}
        if details:
            assert got.probability.shape == mask.shape and np.isfinite(got.probability).all()
