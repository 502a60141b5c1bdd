"""The reference's numerical recipes against values worked out by hand (spec sections 3.2, 3.3, 3.6 and 8):
the test resize, the prior mask, masked average pooling, pyramid bin sizes and the scoring upsample."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_tiny_model

from ntre_zoo.data.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    canvas_shape,
    image_to_canvas,
    logits_to_original,
    mask_to_canvas,
    normalize,
)
from ntre_zoo.model.heads import bin_size, prior_mask, weighted_gap

# A 24 x 40 image whose value is linear in (y, x): bilinear resizing samples it exactly where it looks.
H, W, SIZE = 24, 40, 17


def ramp(y, x, channel):
    return 0.01 * y + 0.012 * x + 0.1 * channel


def ramp_image() -> torch.Tensor:
    y = torch.arange(H, dtype=torch.float64).view(H, 1)
    x = torch.arange(W, dtype=torch.float64).view(1, W)
    return torch.stack([ramp(y, x, c).expand(H, W) for c in range(3)]).float()


# ------------------------------------------------------------------------------------------ test resize
def test_canvas_shape_scales_the_long_side_then_floors_both_to_multiples_of_8():
    # 24 x 40 -> long side 17: 10.2 x 17 -> int() -> 10 x 17 -> floored to multiples of 8 -> 8 x 16.
    assert canvas_shape(H, W, SIZE) == (8, 16)
    assert canvas_shape(W, H, SIZE) == (16, 8)  # portrait: the same with sides exchanged
    assert canvas_shape(1000, 400, 473) == (472, 184)  # 473 x 189.2 -> 473 x 189 -> 472 x 184


def test_image_canvas_by_hand():
    """Resized to 8 x 16 (bilinear, half-pixel centres: row i samples y = 3i + 1, column j samples
    x = 2.5j + 0.75), placed top-left, the rest 0 (black) before normalisation."""
    canvas = image_to_canvas(ramp_image(), SIZE)
    expected = torch.zeros(3, SIZE, SIZE)
    for c in range(3):
        for i in range(8):
            for j in range(16):
                expected[c, i, j] = ramp(3 * i + 1, 2.5 * j + 0.75, c)
    torch.testing.assert_close(canvas, expected, rtol=0, atol=1e-6)


def test_normalisation_comes_after_the_black_padding():
    normalised = normalize(image_to_canvas(ramp_image(), SIZE), IMAGENET_MEAN, IMAGENET_STD)
    for c in range(3):
        # Padding: black, then normalised -> -mean / std; image pixels: (value - mean) / std.
        assert normalised[c, -1, -1].item() == pytest.approx(-IMAGENET_MEAN[c] / IMAGENET_STD[c], rel=1e-6)
        assert normalised[c, 8:, :].unique().numel() == 1 and normalised[c, :, 16:].unique().numel() == 1
        value = (ramp(3 * 2 + 1, 2.5 * 5 + 0.75, c) - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert normalised[c, 2, 5].item() == pytest.approx(value, rel=1e-5)


def test_mask_canvas_by_hand():
    """Labels: nearest (row i takes y = 3i, column j takes x = floor(2.5j)), padded with 255 (ignore)."""
    label = (torch.arange(H).view(H, 1) * 100 + torch.arange(W).view(1, W)) % 7  # every pixel its own value
    canvas = mask_to_canvas(label, SIZE)
    expected = torch.full((SIZE, SIZE), 255, dtype=torch.long)
    for i in range(8):
        for j in range(16):
            expected[i, j] = label[3 * i, math.floor(2.5 * j)]
    assert torch.equal(canvas, expected)


# ------------------------------------------------------------------------------------------ scoring
def test_scoring_upsamples_to_the_long_side_square_and_keeps_the_top_left():
    """A 5 x 5 canvas map with value 4y + x upsampled (align_corners=True) to L x L, L = max(h, w) = 9:
    output row i samples y = i * 4 / 8 = i / 2, so the value at (i, j) is 2i + j / 2; then the top-left h x w."""
    canvas = (4 * torch.arange(5.0).view(5, 1) + torch.arange(5.0).view(1, 5)).expand(1, 2, 5, 5)
    for h, w in ((9, 6), (6, 9), (9, 9), (3, 9)):
        out = logits_to_original(canvas, h, w)
        expected = torch.tensor([[2 * i + j / 2 for j in range(w)] for i in range(h)]).expand(1, 2, h, w)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------ prior mask
def _columns(*vectors) -> torch.Tensor:
    """C=2 vectors as a (1, 2, 1, n) map, float64 so the 1e-7 epsilons show."""
    return torch.tensor(vectors, dtype=torch.float64).t().reshape(1, 2, 1, len(vectors))


@pytest.mark.parametrize("skip_empty", [True, False])
def test_prior_mask_by_hand(skip_empty):
    """Per query position, the max over support positions of dot / (|s| |q| + 1e-7); then
    (v - min) / (max - min + 1e-7) over the image."""
    query = _columns((1, 0), (0, 1), (1, 1), (-1, 0.5))
    support = _columns((2, 0), (0, -3))
    cos = [
        max(2 / (2 + 1e-7), 0.0),  # (1, 0): 1 against (2, 0), 0 against (0, -3)
        max(0.0, -3 / (3 + 1e-7)),
        max(2 / (2 * math.sqrt(2) + 1e-7), -3 / (3 * math.sqrt(2) + 1e-7)),
        max(-2 / (2 * math.sqrt(1.25) + 1e-7), -1.5 / (3 * math.sqrt(1.25) + 1e-7)),
    ]
    lo, hi = min(cos), max(cos)
    expected = torch.tensor([(v - lo) / (hi - lo + 1e-7) for v in cos], dtype=torch.float64).view(1, 1, 1, 4)
    torch.testing.assert_close(prior_mask(query, support, skip_empty=skip_empty), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("skip_empty", [True, False])
def test_prior_mask_masked_out_support_positions_count_as_similarity_0(skip_empty):
    """A zero (masked-out) support feature has similarity 0 / (0 + 1e-7) = 0 with every query position."""
    query = _columns((1, 0), (-1, 0), (0, 1))
    support = _columns((3, 0), (0, 0))
    cos = [1 / (1 + 1e-7 / 3), 0.0, 0.0]  # (-1, 0) scores -1 against (3, 0) and 0 against the zero vector
    expected = torch.tensor([v / (cos[0] + 1e-7) for v in cos], dtype=torch.float64).view(1, 1, 1, 3)
    torch.testing.assert_close(prior_mask(query, support, skip_empty=skip_empty), expected, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------ pooling, bins
def test_weighted_gap_by_hand():
    features = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.0], [5.0, 8.0]]])[None]
    mask = torch.tensor([[1.0, 0.5], [0.0, 0.25]])[None, None]  # soft, as a bilinearly resized mask
    area = 1.75 + 5e-4
    expected = torch.tensor([(1 + 1 + 1) / area, (-1 + 0 + 2) / area]).view(1, 2, 1, 1)
    torch.testing.assert_close(weighted_gap(features, mask), expected, rtol=1e-6, atol=0)


def test_bin_sizes_are_absolute_above_1_and_fractions_at_most_1():
    assert bin_size(60, (9, 12)) == (60, 60)
    assert bin_size(0.5, (9, 12)) == (4, 6)
    assert bin_size(1.0, (9, 12)) == (9, 12)
    assert bin_size(0.125, (5, 12)) == (1, 1)  # never below one cell


def test_predict_gives_the_model_these_canvases():
    """What ``predict`` feeds the network: the normalised image canvas of a portrait query, and the support's
    label canvas (nearest, 255 padding)."""
    model = make_tiny_model(test_size=SIZE)
    seen = {}
    model.register_forward_pre_hook(lambda module, args: seen.setdefault("query", args[0].clone()))
    encode = model.encode_support_tensors

    def spy(images, masks):
        seen["masks"] = masks.clone()
        return encode(images, masks)

    model.encode_support_tensors = spy
    label = torch.zeros(H, W, dtype=torch.long)
    label[:15, 5:30] = 1
    portrait = ramp_image().transpose(1, 2)  # 40 x 24: value at (y, x) is ramp(x, y)
    model.predict(ramp_image(), label, portrait)
    expected = torch.zeros(3, SIZE, SIZE)  # 40 x 24 -> 16 x 8: row i samples y = 2.5i + 0.75, column j x = 3j + 1
    for c in range(3):
        for i in range(16):
            for j in range(8):
                expected[c, i, j] = ramp(3 * j + 1, 2.5 * i + 0.75, c)
    expected = (expected - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(seen["query"][0], expected, rtol=0, atol=1e-5)
    masks = torch.full((SIZE, SIZE), 255, dtype=torch.long)
    masks[:8, :16] = 0
    masks[:5, 2:12] = 1  # rows 3i in [0, 15): i = 0..4; columns floor(2.5j) in [5, 30): j = 2..11
    assert torch.equal(seen["masks"].reshape(SIZE, SIZE).long(), masks)
