"""``predict``: segment query images from a few annotated supports, at each query's original size.

Preprocessing is the reference evaluation protocol (spec section 8): the test resize onto a
``test_size`` canvas (:mod:`ntre_zoo.data.preprocessing`), ImageNet normalisation, and logits upsampled back
to ``max(h, w)`` squared then cropped to the original ``h x w``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.preprocessing import (
    image_to_canvas,
    logits_to_original,
    mask_to_canvas,
    normalize,
)
from ..model.heads import resize
from ..model.types import FewShotSegmenter, NTRENetOutput, SupportFeatures
from .image_io import as_list, load_image, load_mask

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


def prepare_image(model: FewShotSegmenter, value: Any, name: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """Load and place an image on the model's normalised test canvas: ``((3, S, S), (H, W))``."""
    image = load_image(value, name)
    canvas = image_to_canvas(image, model.config.test_size)
    return normalize(canvas, model.config.mean, model.config.std), (image.shape[-2], image.shape[-1])


def _device_of(model: FewShotSegmenter, device: str | torch.device | None) -> torch.device:
    """Move the model if asked (and to channels_last, which oneDNN and cuDNN prefer, unless the model's
    ``fast_inference`` is off); return where it runs."""
    if device is not None:
        model.to(torch.device(device))
    if model.fast_inference:
        model.to(memory_format=torch.channels_last)
    return next(model.parameters()).device


def _to_device(images: torch.Tensor, model: FewShotSegmenter, device: torch.device) -> torch.Tensor:
    """``(N, 3, S, S)`` batch on ``device``, channels_last on the fast path."""
    images = images.to(device)
    return images.contiguous(memory_format=torch.channels_last) if model.fast_inference else images


@contextlib.contextmanager
def _eval_mode(model: FewShotSegmenter) -> Iterator[None]:
    """Eval mode and no autograd for the call; the caller's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def encode_support(
    model: FewShotSegmenter,
    support_imgs: Any,
    support_masks: Any,
    *,
    device: str | torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
) -> SupportFeatures:
    """Preprocess and encode K annotated supports once (see :func:`predict` for accepted forms).

    Raises:
        ValueError: K images vs a different number of masks, a mask whose size differs from its image,
            or a mask with no target pixel.
    """
    images, masks = as_list(support_imgs), as_list(support_masks)
    if not images:
        raise ValueError("support_imgs is empty; pass at least one annotated support image.")
    if len(images) != len(masks):
        raise ValueError(
            f"Got {len(images)} support image(s) but {len(masks)} support mask(s); pass one mask per image."
        )
    size = model.config.test_size
    canvases, canvas_masks = [], []
    for i, (image_value, mask_value) in enumerate(zip(images, masks, strict=False)):
        image = load_image(image_value, f"support_imgs[{i}]")
        mask = load_mask(mask_value, f"support_masks[{i}]")
        if tuple(mask.shape) != tuple(image.shape[-2:]):
            raise ValueError(
                f"support_masks[{i}] is {mask.shape[0]}x{mask.shape[1]} but support_imgs[{i}] is "
                f"{image.shape[1]}x{image.shape[2]} (H x W); each mask must have its image's size."
            )
        if not bool((mask == 1).any()):
            raise ValueError(f"support_masks[{i}] has no target pixel; a support must show the object to segment.")
        canvases.append(normalize(image_to_canvas(image, size), model.config.mean, model.config.std))
        canvas_masks.append(mask_to_canvas(mask, size))
    device = _device_of(model, device)
    with _eval_mode(model), _autocast(device, amp_dtype):
        batch = _to_device(torch.stack(canvases), model, device)
        return model.encode_support(batch[None], torch.stack(canvas_masks)[None].to(device))


def predict(
    model: FewShotSegmenter,
    support_imgs: Any,
    support_masks: Any = None,
    query: Any = None,
    *,
    return_details: bool = False,
    device: str | torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
    batch_size: int = 4,
) -> np.ndarray | Prediction | list[np.ndarray] | list[Prediction]:
    """Segment one or several query images given K annotated support images.

    Args:
        model: an :class:`~ntre_zoo.NTRENet`.
        support_imgs: one image or a list of K. An image is a file path, a ``PIL.Image``, an ``HxWx3``
            uint8 numpy array or a ``3xHxW`` tensor (uint8 or float in [0, 1]); grayscale, RGBA and
            16-bit inputs are converted. Or a :class:`SupportFeatures` from ``model.encode_support``,
            in which case the next positional argument is the query.
        support_masks: one mask per support image, same size: path, PIL (L/P/1), numpy or tensor;
            bool, {0, 1} or {0, 255}.
        query: one image or a list of images (supports are encoded once and reused for every query).
        return_details: return :class:`Prediction` objects instead of masks.
        device: run there (the model is moved); default: where the model is.
        amp_dtype: e.g. ``torch.bfloat16`` to run under autocast; default fp32.
        batch_size: queries per forward pass.

    Returns:
        For a single query a ``uint8 (H, W)`` mask in {0, 1} at its original size (or a Prediction);
        for a list of queries a list of those.

    Raises:
        ValueError, TypeError, FileNotFoundError: naming the argument and index that is wrong.
    """
    if isinstance(support_imgs, SupportFeatures):
        support = support_imgs
        if query is None:
            query = support_masks
        elif support_masks is not None:
            raise ValueError("With a precomputed support, call predict(support, query).")
        device = _device_of(model, device)
        support = support.to(device)
    else:
        if support_masks is None:
            raise ValueError("support_masks is required: pass one mask per support image.")
        support = encode_support(model, support_imgs, support_masks, device=device, amp_dtype=amp_dtype)
        device = support.prototype.device
    if query is None:
        raise ValueError("query is required: pass an image or a list of images to segment.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
    single = not isinstance(query, (list, tuple))
    queries = [query] if single else list(query)
    results: list[Any] = []
    for start in range(0, len(queries), batch_size):
        prepared = [
            prepare_image(model, q, f"query[{start + i}]" if not single else "query")
            for i, q in enumerate(queries[start : start + batch_size])
        ]
        batch = _to_device(torch.stack([canvas for canvas, _ in prepared]), model, device)
        with _eval_mode(model), _autocast(device, amp_dtype):
            out = model(batch, support=support)
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
    bg, do = canvas_maps(out)
    results: list[Any] = []
    for i, (h, w) in enumerate(sizes):
        logits = logits_to_original(out.logits[i : i + 1].float(), h, w)[0]
        mask = logits.argmax(dim=0).to(torch.uint8).cpu().numpy()
        if not details:
            results.append(mask)
            continue
        results.append(
            Prediction(
                mask=mask,
                probability=logits.softmax(dim=0)[1].cpu().numpy(),
                bg_map=logits_to_original(bg[i : i + 1], h, w)[0, 0].cpu().numpy(),
                do_map=logits_to_original(do[i : i + 1], h, w)[0, 0].cpu().numpy(),
            )
        )
    return results
