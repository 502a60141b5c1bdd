"""The reference evaluation resize (PFENet ``test.py``, spec section 8) and normalisation, on tensors.

``long_side`` (the reference, and what ``predict`` uses): every image has its long side scaled to ``size``
(down or up) keeping the aspect ratio and both sides floored to multiples of 8 (473 -> 472); it is pasted at the
top-left of a ``size x size`` canvas: images bilinear and padded with 0 *before* normalisation (black, as the
reference), labels nearest and padded with 255. ``square`` (HSNet's protocol) stretches the image over the
whole canvas instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESIZE_MODES",
    "SQUARE_BUDGET",
    "canvas_shape",
    "check_resize",
    "image_to_canvas",
    "logits_to_original",
    "mask_to_canvas",
    "normalize",
]

IGNORE_INDEX = 255
#: ImageNet statistics every backbone of the zoo was pretrained with (and the reference normalises by).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: How an image goes onto the square evaluation canvas: ``long_side`` (PFENet's ``Resize``, the reference)
#: or ``square`` (HSNet's ``transforms.Resize((S, S))``, aspect ratio not kept).
RESIZE_MODES = ("long_side", "square")


def check_resize(resize: str) -> str:
    """``resize`` if it is one of :data:`RESIZE_MODES`.

    Raises:
        ValueError: any other value.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"Unknown resize {resize!r}. Expected one of: {', '.join(RESIZE_MODES)}.")
    return resize


def canvas_shape(height: int, width: int, size: int, resize: str = "long_side") -> tuple[int, int]:
    """The ``(h, w)`` an ``height x width`` image is resized to before being pasted on the canvas.

    ``long_side``, as the reference ``Resize.find_new_hw`` (``resized_val: True``): the long side becomes
    ``size`` whether the image is larger or smaller, and both sides are floored to multiples of 8 (a side
    shorter than 8 pixels keeps its length). ``square``: ``(size, size)``.
    """
    if check_resize(resize) == "square":
        return size, size
    if height >= width:
        new_h, new_w = size, int(width * (size * 1.0 / height))
    else:
        new_h, new_w = int(height * (size * 1.0 / width)), size
    return new_h // 8 * 8 or max(new_h, 1), new_w // 8 * 8 or max(new_w, 1)


def image_to_canvas(image: torch.Tensor, size: int, resize: str = "long_side") -> torch.Tensor:
    """``(3, H, W)`` float image (any range) -> ``(3, size, size)``, resized bilinearly, black padding
    (``square``: antialiased, as torchvision's ``Resize`` on the PIL images HSNet loads)."""
    h, w = canvas_shape(image.shape[-2], image.shape[-1], size, resize)
    resized = F.interpolate(
        image[None].float(), size=(h, w), mode="bilinear", align_corners=False, antialias=resize == "square"
    )[0]
    canvas = resized.new_zeros((image.shape[0], size, size))
    canvas[:, :h, :w] = resized
    return canvas


def mask_to_canvas(mask: torch.Tensor, size: int, resize: str = "long_side") -> torch.Tensor:
    """``(H, W)`` integer label -> ``(size, size)`` int64, resized nearest, padded with 255."""
    h, w = canvas_shape(mask.shape[-2], mask.shape[-1], size, resize)
    resized = F.interpolate(mask[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
    canvas = torch.full((size, size), IGNORE_INDEX, dtype=torch.long, device=mask.device)
    canvas[:h, :w] = resized
    return canvas


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(..., 3, H, W)`` image in [0, 1] -> normalised with per-channel mean/std."""
    m = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image - m) / s


#: ``logits_to_original`` upsamples the whole ``L x L`` square (the reference's computation, bit for bit) while
#: it holds at most this many times the pixels kept; thinner images take the rectangle-only path.
SQUARE_BUDGET = 4


def logits_to_original(logits: torch.Tensor, height: int, width: int, resize: str = "long_side") -> torch.Tensor:
    """Canvas maps ``(B, C, S, S)`` -> ``(B, C, height, width)`` as the reference scores them.

    ``long_side``: upsample (bilinear, ``align_corners=True``) to ``L x L`` with ``L = max(height, width)`` and
    keep the top-left (PFENet ``ori_resize``). ``square``: resize to ``height x width`` directly (HSNet's
    ``use_original_imgsize``). A target of the canvas's own size gets the logits unchanged.

    Memory stays within a few times ``B x C x height x width`` (plus the canvas): while ``L x L`` is at most
    :data:`SQUARE_BUDGET` times ``height x width`` (any image up to a 1:4 aspect ratio) the square is computed
    as the reference does, so the numbers are the reference's exactly; a thinner image (say 100000 x 4, whose
    square would take 80 GB) gets only the kept rectangle, computed from the same sample positions and
    weights (equal to the square's crop up to float rounding, ``tests/test_hardening.py``).
    """
    if check_resize(resize) == "square":
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=True)
    side = max(height, width)
    if side * side <= SQUARE_BUDGET * height * width:
        out = F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=True)
        return out[..., :height, :width]
    return _upsample_rectangle(logits, side, height, width)


def _linear_taps(size: int, side: int, count: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The first ``count`` outputs of an ``align_corners=True`` resize ``size -> side`` along one axis:
    ``(index0, index1, weight0, weight1)`` with PyTorch's sample positions ``i * (size - 1) / (side - 1)``."""
    scale = torch.tensor((size - 1) / (side - 1) if side > 1 else 0.0, dtype=torch.float32)
    position = torch.arange(count, dtype=torch.float32) * scale
    index0 = position.floor().long().clamp(max=size - 1)
    weight1 = (position - index0).clamp(0, 1)
    index1 = torch.where(index0 < size - 1, index0 + 1, index0)
    return index0.to(device), index1.to(device), (1 - weight1).to(device), weight1.to(device)


def _upsample_rectangle(logits: torch.Tensor, side: int, height: int, width: int) -> torch.Tensor:
    """The top-left ``height x width`` of the ``side x side`` bilinear upsampling, without the square."""
    rows0, rows1, row_w0, row_w1 = _linear_taps(logits.shape[-2], side, height, logits.device)
    cols0, cols1, col_w0, col_w1 = _linear_taps(logits.shape[-1], side, width, logits.device)
    source = logits[..., : int(rows1.max()) + 1, :].float()  # only the canvas rows that are sampled
    across = source[..., cols0] * col_w0 + source[..., cols1] * col_w1  # (B, C, rows, width)
    out = across[..., rows0, :] * row_w0[:, None] + across[..., rows1, :] * row_w1[:, None]
    return out.to(logits.dtype)
