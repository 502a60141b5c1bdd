"""The reference evaluation resize (PFENet ``test.py``, spec section 8) and normalisation, on tensors.

``long_side`` (the reference, and what ``predict`` uses): every image has its long side scaled to ``size``
(down or up) keeping the aspect ratio and both sides floored to multiples of 8 (473 -> 472); it is pasted at the
top-left of a ``size x size`` canvas: images bilinear and padded with 0 *before* normalisation (black, as the
reference), labels nearest and padded with 255. ``square`` (HSNet's protocol) stretches the image over the
whole canvas instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESIZE_MODES",
    "SQUARE_BUDGET",
    "TILE_VALUES",
    "canvas_shape",
    "check_resize",
    "image_to_canvas",
    "logits_to_original",
    "mask_to_canvas",
    "normalize",
    "original_tiles",
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


#: :func:`original_tiles` computes the ``L x L`` square (in tiles) while it holds at most this many times the
#: pixels kept (any image up to a 1:4 aspect ratio); a thinner image gets only the kept rectangle.
SQUARE_BUDGET = 4
#: :func:`original_tiles` computes at most about this many output values at a time (16 MB of float32), so that
#: mapping a query back to its size needs memory for the result only, not for the ``L x L`` square.
TILE_VALUES = 1 << 22


def original_tiles(
    logits: torch.Tensor, height: int, width: int, resize: str = "long_side", tile_values: int | None = None
) -> Iterator[tuple[slice, torch.Tensor]]:
    """:func:`logits_to_original` in column bands, left to right: ``(columns, (B, C, height, len(columns)))``.

    A resized map (before the crop) of at most ``tile_values`` values (default :data:`TILE_VALUES`) is one band,
    computed by one ``F.interpolate(..., mode="bilinear", align_corners=True)`` as the reference does. A larger
    one up to a 1:4 aspect ratio (:data:`SQUARE_BUDGET`) is resized as two 1-D linear resizes, along the width
    (a band of canvas rows at a time) then along the height (a band of output columns at a time), which is how
    PyTorch's 2-D kernel computes each output (the height-weighted sum of two width-weighted sums, same sample
    positions and weights): where both sides are enlarged, as a large query's are, the values are the 2-D
    kernel's bit for bit; where a side shrinks (a canvas larger than about 2000 pixels) they may differ by float
    rounding. A thinner image gets only the kept rectangle, from the same sample positions and weights (equal
    up to float rounding), since its square would cost far more than its pixels (``tests/test_predict.py``
    checks all three). Each step holds at most about ``tile_values`` values, plus the ``(B, C, S, width)``
    intermediate of the canvas's ``S`` rows.
    """
    check_resize(resize)
    tile_values = tile_values or TILE_VALUES
    batch, channels, rows, cols = logits.shape
    side = max(height, width)
    out_h, out_w = (height, width) if resize == "square" else (side, side)
    if batch * channels * out_h * out_w <= tile_values:
        resized = F.interpolate(logits, size=(out_h, out_w), mode="bilinear", align_corners=True)
        yield slice(0, width), resized[..., :height, :width]
        return
    if resize == "long_side" and side * side > SQUARE_BUDGET * height * width:
        yield from _rectangle_tiles(logits, side, height, width, tile_values)
        return
    # 1. along the width, a band of canvas rows at a time: (B, C, S, width)
    across = logits.new_empty((batch, channels, rows, width))
    step = max(1, tile_values // (batch * channels * out_w))
    for start in range(0, rows, step):
        band = logits[:, :, start : start + step].reshape(batch, -1, cols)
        resized = F.interpolate(band, size=out_w, mode="linear", align_corners=True)[..., :width]
        across[:, :, start : start + step] = resized.reshape(batch, channels, -1, width)
    # 2. along the height, a band of output columns at a time
    step = max(1, tile_values // (batch * channels * out_h))
    for start in range(0, width, step):
        columns = slice(start, min(start + step, width))
        band = across[..., columns].transpose(-1, -2).reshape(batch, -1, rows)
        resized = F.interpolate(band, size=out_h, mode="linear", align_corners=True)[..., :height]
        tile = resized.reshape(batch, channels, -1, height).transpose(-1, -2)
        yield columns, tile.contiguous(memory_format=torch.channels_last)  # channels innermost: a fast argmax


def _linear_taps(size: int, side: int, count: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The first ``count`` outputs of an ``align_corners=True`` resize ``size -> side`` along one axis:
    ``(index0, index1, weight0, weight1)`` with PyTorch's sample positions ``i * (size - 1) / (side - 1)``."""
    scale = torch.tensor((size - 1) / (side - 1) if side > 1 else 0.0, dtype=torch.float32)
    position = torch.arange(count, dtype=torch.float32) * scale
    index0 = position.floor().long().clamp(max=size - 1)
    weight1 = (position - index0).clamp(0, 1)
    index1 = torch.where(index0 < size - 1, index0 + 1, index0)
    return index0.to(device), index1.to(device), (1 - weight1).to(device), weight1.to(device)


def _rectangle_tiles(
    logits: torch.Tensor, side: int, height: int, width: int, tile_values: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    """The top-left ``height x width`` of the ``side x side`` bilinear upsampling in column bands, without the
    square."""
    rows0, rows1, row_w0, row_w1 = _linear_taps(logits.shape[-2], side, height, logits.device)
    cols0, cols1, col_w0, col_w1 = _linear_taps(logits.shape[-1], side, width, logits.device)
    source = logits[..., : int(rows1.max()) + 1, :].float()  # only the canvas rows that are sampled
    step = max(1, tile_values // (logits.shape[0] * logits.shape[1] * max(height, source.shape[-2])))
    for start in range(0, width, step):
        columns = slice(start, min(start + step, width))
        across = source[..., cols0[columns]] * col_w0[columns] + source[..., cols1[columns]] * col_w1[columns]
        out = across[..., rows0, :] * row_w0[:, None] + across[..., rows1, :] * row_w1[:, None]
        yield columns, out.to(logits.dtype).contiguous(memory_format=torch.channels_last)


def logits_to_original(logits: torch.Tensor, height: int, width: int, resize: str = "long_side") -> torch.Tensor:
    """Canvas maps ``(B, C, S, S)`` -> ``(B, C, height, width)`` as the reference scores them.

    ``long_side``: upsample (bilinear, ``align_corners=True``) to ``L x L`` with ``L = max(height, width)`` and
    keep the top-left (PFENet ``ori_resize``). ``square``: resize to ``height x width`` directly (HSNet's
    ``use_original_imgsize``). A target of the canvas's own size gets the logits unchanged.

    Computed in tiles (:func:`original_tiles`), so the memory is the result's plus a few tens of MB whatever
    the size and aspect ratio (a 100000 x 4 image's square would take 80 GB).
    """
    out = logits.new_empty((*logits.shape[:2], height, width))
    for columns, tile in original_tiles(logits, height, width, resize):
        out[..., columns] = tile
    return out
