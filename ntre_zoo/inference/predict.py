"""``predict``: segment query images from a few annotated supports, at each query's original size.

Preprocessing is the reference evaluation protocol (spec section 8): the test resize onto a
``test_size`` canvas (:mod:`ntre_zoo.data.preprocessing`), ImageNet normalisation, and logits upsampled back
to ``max(h, w)`` squared then cropped to the original ``h x w``.

Thread safety: the forward passes run on an eval-mode view of the model
(:func:`~ntre_zoo.model.eval_view.eval_view`: its own module objects, sharing every parameter and buffer), so a
call never flips the model's ``train()``/``eval()`` flags,
never updates BatchNorm statistics, and gives the same answer whatever mode the model is in and whatever
other threads do with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.preprocessing import (
    image_to_canvas,
    logits_to_original,
    mask_to_canvas,
    normalize,
    original_tiles,
)
from ..model.config import check_int, resolve_device
from ..model.eval_view import eval_view
from ..model.heads import resize
from ..model.types import FewShotSegmenter, NTRENetOutput, SupportFeatures
from .annotations import support_mask
from .image_io import MAX_PIXELS, as_list, check_mask_threshold, check_max_pixels, load_image
from .precision import autocast_dtype, precision_of_amp_dtype

__all__ = ["Prediction", "canvas_maps", "encode_support", "predict", "prepare_image"]


@dataclass
class Prediction:
    """A query's result at its original ``H x W``.

    Attributes:
        mask: ``uint8 (H, W)`` in {0, 1}, 1 = target.
        probability: ``float32 (H, W)`` softmax probability of the target.
        bg_map: ``float32 (H, W)`` background probability from BG mining (what BGEM eliminates; zeros for
            a model without BG mining).
        do_map: ``float32 (H, W)`` distracting-object mask averaged over the pyramid bins (what DOEM
            eliminates; zeros for a model without DOEM).
    """

    mask: np.ndarray
    probability: np.ndarray
    bg_map: np.ndarray
    do_map: np.ndarray


def prepare_image(
    model: FewShotSegmenter, value: Any, name: str, max_pixels: int | None = MAX_PIXELS
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Load and place an image on the model's normalised test canvas: ``((3, S, S), (H, W))``."""
    image = load_image(value, name, max_pixels)
    canvas = image_to_canvas(image, model.config.test_size)
    return normalize(canvas, model.config.mean, model.config.std), (image.shape[-2], image.shape[-1])


def _device_of(model: FewShotSegmenter, device: str | torch.device | None) -> torch.device:
    """Move the model if asked (and to channels_last, which oneDNN and cuDNN prefer, unless the model's
    ``fast_inference`` is off); return where it runs."""
    device = resolve_device(device)
    if device is not None:
        model.to(device)
    if model.fast_inference and not all(
        p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4
    ):
        model.to(memory_format=torch.channels_last)  # once: later calls find it done and write nothing
    return next(model.parameters()).device


def _placed(
    model: FewShotSegmenter, device: str | torch.device | None, precision: str
) -> tuple[torch.device, torch.dtype | None]:
    """Where the model runs (moved there if asked, :func:`_device_of`) and the autocast dtype ``precision``
    resolves to for it there (None: fp32): the one resolution of a public call, which its helpers are handed."""
    device = _device_of(model, device)
    return device, autocast_dtype(precision, device, model=model)


def _to_device(images: torch.Tensor, model: FewShotSegmenter, device: torch.device) -> torch.Tensor:
    """``(N, 3, S, S)`` batch on ``device``, channels_last on the fast path."""
    images = images.to(device)
    return images.contiguous(memory_format=torch.channels_last) if model.fast_inference else images


def _inference(device: torch.device, dtype: torch.dtype | None) -> contextlib.ExitStack[bool | None]:
    """No autograd, and autocast to ``dtype`` unless it is None (fp32)."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if dtype is not None:
        stack.enter_context(torch.autocast(device_type=device.type, dtype=dtype))
    return stack


def encode_support(
    model: FewShotSegmenter,
    support_imgs: Any,
    support_masks: Any,
    *,
    device: str | torch.device | None = None,
    precision: str = "auto",
    amp_dtype: torch.dtype | None = None,
    mask_threshold: float | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> SupportFeatures:
    """Preprocess and encode K annotated supports once (see :func:`predict` for accepted forms, ``precision`` and
    ``max_pixels``; ``amp_dtype`` is deprecated: use ``precision``).

    Raises:
        ValueError: K images vs a different number of masks, a mask whose size differs from its image,
            a mask with no target pixel, or a target too small to survive the resize to the model's size.
    """
    precision = precision_of_amp_dtype(precision, amp_dtype, default="auto", function="encode_support")
    mask_threshold = check_mask_threshold(mask_threshold)
    max_pixels = check_max_pixels(max_pixels)
    device, dtype = _placed(model, device, precision)
    return _encode_support(model, support_imgs, support_masks, device, dtype, mask_threshold, max_pixels)


def _encode_support(
    model: FewShotSegmenter,
    support_imgs: Any,
    support_masks: Any,
    device: torch.device,
    dtype: torch.dtype | None,
    mask_threshold: float | None,
    max_pixels: int | None,
) -> SupportFeatures:
    """:func:`encode_support` with the arguments its public caller checked and resolved: the model already on
    ``device``, ``dtype`` the autocast dtype (None: fp32)."""
    images, masks = as_list(support_imgs), as_list(support_masks)
    if not images:
        raise ValueError("support_imgs is empty; pass at least one annotated support image.")
    if len(images) != len(masks):
        raise ValueError(
            f"support_imgs and support_masks differ in length: got {len(images)} support image(s) but "
            f"{len(masks)} support mask(s); pass one mask per image."
        )
    size = model.config.test_size
    canvases, canvas_masks, sizes = [], [], []
    for i, (image_value, mask_value) in enumerate(zip(images, masks, strict=False)):
        image = load_image(image_value, f"support_imgs[{i}]", max_pixels)
        shape = tuple(image.shape[-2:])
        mask = support_mask(mask_value, shape, f"support_masks[{i}]", mask_threshold, size, max_pixels)
        if tuple(mask.shape) != tuple(image.shape[-2:]):
            raise ValueError(
                f"support_masks[{i}] is {mask.shape[0]}x{mask.shape[1]} but support_imgs[{i}] is "
                f"{image.shape[1]}x{image.shape[2]} (H x W); each mask must have its image's size."
            )
        if not bool((mask == 1).any()):
            threshold = "" if mask_threshold is None else f" above mask_threshold={mask_threshold:g}"
            raise ValueError(
                f"support_masks[{i}] has no target pixel{threshold}; a support must show the object to segment."
            )
        canvases.append(normalize(image_to_canvas(image, size), model.config.mean, model.config.std))
        canvas_masks.append(mask_to_canvas(mask, size))
        sizes.append((int((mask == 1).sum()), *mask.shape))
    with _inference(device, dtype):
        batch = _to_device(torch.stack(canvases), model, device)
        support = eval_view(model).encode_support(batch[None], torch.stack(canvas_masks)[None].to(device))
    _check_targets_survive(support, sizes, size)
    return support


def _check_targets_survive(support: SupportFeatures, sizes: Sequence[tuple[int, int, int]], test_size: int) -> None:
    """Refuse a support whose target left no weight on the feature map (a small object in a large photo):
    its prototype would be zero and the answer all background."""
    if support.masks is None:
        return
    area = support.masks.flatten(2).sum(dim=-1)[0]  # (K,)
    for i, (pixels, h, w) in enumerate(sizes):
        if float(area[i]) <= 0:
            feature = "x".join(str(n) for n in support.masks.shape[-2:])
            raise ValueError(
                f"support_masks[{i}]: the target ({pixels} pixel(s) of a {h}x{w} image) is too small at this test "
                f"size: placed on the model's {test_size}x{test_size} canvas and resized to its {feature} feature "
                "map, nothing of it is left, so the answer would be all background. Give the object more pixels: "
                "crop the support image around it (an image smaller than the canvas is not enlarged: upscale it), "
                "or load the model with a larger test_size (from_pretrained(..., test_size=...))."
            )


def _check_support_fits(model: FewShotSegmenter, support: SupportFeatures) -> None:
    """A precomputed support must come from a model of this architecture (its shapes say so)."""
    expected = {"prototype": model.config.reduce_dim}
    high = getattr(getattr(model, "backbone", None), "high_channels", None)
    if high is not None:
        expected["masked_high"] = high
    found = {"prototype": support.prototype.shape[1], "masked_high": support.masked_high.shape[2]}
    for key, channels in expected.items():
        if found[key] != channels:
            raise ValueError(
                f"support: this SupportFeatures has {found[key]} {key} channels where the model has {channels}: it "
                "was encoded by a different model. Encode the supports with this model: model.encode_support(...)."
            )


def predict(
    model: FewShotSegmenter,
    support_imgs: Any,
    support_masks: Any = None,
    query: Any = None,
    *,
    return_details: bool = False,
    device: str | torch.device | None = None,
    precision: str = "auto",
    amp_dtype: torch.dtype | None = None,
    batch_size: int = 4,
    mask_threshold: float | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> np.ndarray | Prediction | list[np.ndarray] | list[Prediction]:
    """Segment one or several query images given K annotated support images.

    Args:
        model: an :class:`~ntre_zoo.NTRENet`.
        support_imgs: one image or a list of K. An image is a file path, a ``PIL.Image``, an ``HxWx3``
            uint8 numpy array or a ``3xHxW`` tensor (uint8 or float in [0, 1]); grayscale, RGBA and
            16-bit inputs are converted. Or a :class:`SupportFeatures` from ``model.encode_support``,
            in which case the next positional argument is the query.
        support_masks: one annotation per support image: a mask of its size (path, PIL (L/P/1, or grey RGB),
            numpy or tensor; bool, {0, 1} or {0, 255}; files are read in their displayed (EXIF) orientation), or
            a :class:`~ntre_zoo.Box`, :class:`~ntre_zoo.Points` or :class:`~ntre_zoo.Scribble` (rules in
            :mod:`ntre_zoo.inference.annotations`).
        query: one image or a list of images (supports are encoded once and reused for every query).
        return_details: return :class:`Prediction` objects instead of masks.
        device: run there; default: where the model is. The model itself is moved and stays there after
            the call (the caller's model, not a copy): ``model.to("cpu")`` takes it back.
        precision: ``fp32``, ``bf16``, ``fp16`` (autocast) or ``auto``: bf16 where the device computes it
            natively and the model is large enough to gain from it, fp32 elsewhere
            (:mod:`ntre_zoo.inference.precision`). bf16 changes the numbers slightly (a few pixels of the
            mask); ``precision="fp32"`` gives the reference numerics on every machine.
        amp_dtype: deprecated (it goes in the next release; a ``DeprecationWarning`` says so): the older spelling
            of ``precision`` (``torch.bfloat16`` = ``"bf16"``).
        batch_size: queries per forward pass.
        mask_threshold: binarise soft support masks (anti-aliased, JPEG): target where the value is above it,
            in the mask's scale (127 for 0..255, 0.5 for [0, 1]). Default: masks must be binary.
        max_pixels: refuse any image or mask of more pixels (height x width), a file from its header before it
            is decoded (default :data:`~ntre_zoo.inference.image_io.MAX_PIXELS`, 40 megapixels; None: no cap).

    Returns:
        For a single query a ``uint8 (H, W)`` mask in {0, 1} at its original size (or a Prediction);
        for a list of queries a list of those.

    Raises:
        ValueError, TypeError, FileNotFoundError: naming the argument and index that is wrong.
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    precision = precision_of_amp_dtype(precision, amp_dtype, default="auto", function="predict")
    max_pixels = check_max_pixels(max_pixels)
    precomputed = isinstance(support_imgs, SupportFeatures)
    if precomputed:
        if query is None:
            query = support_masks
        elif support_masks is not None:
            raise ValueError("With a precomputed support, call predict(support, query).")
        _check_support_fits(model, support_imgs)
    elif support_masks is None:
        raise ValueError("support_masks is required: pass one mask per support image.")
    else:
        mask_threshold = check_mask_threshold(mask_threshold)
    device, dtype = _placed(model, device, precision)
    if precomputed:
        support = support_imgs.to(device)
    else:
        support = _encode_support(model, support_imgs, support_masks, device, dtype, mask_threshold, max_pixels)
    if query is None:
        raise ValueError("query is required: pass an image or a list of images to segment.")
    single = not isinstance(query, (list, tuple))
    queries = [query] if single else list(query)
    view = eval_view(model)
    results: list[Any] = []
    for start in range(0, len(queries), batch_size):
        prepared = [
            prepare_image(model, q, f"query[{start + i}]" if not single else "query", max_pixels)
            for i, q in enumerate(queries[start : start + batch_size])
        ]
        batch = _to_device(torch.stack([canvas for canvas, _ in prepared]), model, device)
        with _inference(device, dtype):
            out = view(batch, support=support)
        results.extend(_to_original(out, [hw for _, hw in prepared], return_details))
    return results[0] if single else results


def canvas_maps(out: NTRENetOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """The BG and DO maps of a forward pass at the canvas size: ``(B, 1, S, S)`` float32 each.

    BG: the BG-mining probability of background (what BGEM eliminates); DO: the distracting-object masks
    averaged over the pyramid bins (what DOEM eliminates). Zeros for a model without BG mining / DOEM.
    """
    canvas = tuple(out.logits.shape[-2:])
    blank = out.logits.new_zeros((out.logits.shape[0], 1, *canvas), dtype=torch.float32)
    bg = blank if out.bg_logits is None else resize(out.bg_logits.float().softmax(dim=1)[:, 1:], canvas)
    do = torch.stack([resize(m.float(), canvas) for m in out.do_masks]).mean(dim=0) if out.do_masks else blank
    return bg, do


def _to_original(out: NTRENetOutput, sizes: Sequence[tuple[int, int]], details: bool) -> list[Any]:
    """Each query's mask (and with ``details`` its float maps) at its own size; the logits come back in tiles
    (:func:`~ntre_zoo.data.preprocessing.original_tiles`), so only the results are ever whole."""
    bg, do = canvas_maps(out)
    results: list[Any] = []
    for i, (h, w) in enumerate(sizes):
        mask = np.empty((h, w), dtype=np.uint8)
        probability = np.empty((h, w), dtype=np.float32) if details else None
        for columns, tile in original_tiles(out.logits[i : i + 1].float(), h, w):
            mask[:, columns] = tile[0].argmax(dim=0).to(torch.uint8).cpu().numpy()
            if probability is not None:
                probability[:, columns] = tile[0].softmax(dim=0)[1].cpu().numpy()
        if probability is None:
            results.append(mask)
            continue
        results.append(
            Prediction(
                mask=mask,
                probability=probability,
                bg_map=logits_to_original(bg[i : i + 1], h, w)[0, 0].cpu().numpy(),
                do_map=logits_to_original(do[i : i + 1], h, w)[0, 0].cpu().numpy(),
            )
        )
    return results
