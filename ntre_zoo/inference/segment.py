"""``segment``: several classes in one call, e.g. ``model.segment(query, {"dog": (imgs, masks), "cat": (imgs,
boxes)})``, returning a label map, per-class probabilities, the BG map and per-class DO maps.

NTRENet is a one-way model: each class is its own episode (query vs that class's supports), which gives each
class an independent target probability. The supports of every class are encoded once per call (or passed
encoded, from ``model.encode_support``), each query's backbone pass runs once and serves every class, and
the per-class results are merged by the overlap rule of :func:`resolve_overlaps`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..model.config import check_int
from ..model.eval_view import eval_view
from ..model.types import FewShotSegmenter, SupportFeatures
from .image_io import MAX_PIXELS, check_mask_threshold, check_max_pixels
from .predict import (
    _check_support_fits,
    _encode_support,
    _inference,
    _placed,
    _to_device,
    _to_original,
    prepare_image,
)

__all__ = ["Segmentation", "encode_supports", "resolve_overlaps", "segment"]

#: Most classes one label map holds (``uint8``: 0 is background).
MAX_CLASSES = 255


@dataclass
class Segmentation:
    """Several classes segmented in one query, at its original ``H x W`` (N classes).

    Attributes:
        classes: the class names, in the order of the ``supports`` mapping; label ``i`` is ``classes[i - 1]``.
        label_map: ``uint8 (H, W)``: 0 = background, ``i`` = the i-th class (:func:`resolve_overlaps`).
        probabilities: ``float32 (N, H, W)``, each class's target probability from its own episode.
        bg_map: ``float32 (H, W)``, BG mining's background probability. It depends on the query alone (the
            learned BG prototype, not the supports), so one map serves every class.
        do_maps: ``float32 (N, H, W)``, per class the distracting-object mask averaged over the pyramid bins.
    """

    classes: tuple[str, ...]
    label_map: np.ndarray
    probabilities: np.ndarray
    bg_map: np.ndarray
    do_maps: np.ndarray

    def mask(self, name: str) -> np.ndarray:
        """``uint8 (H, W)`` in {0, 1}: where the label map shows class ``name``."""
        if name not in self.classes:
            raise KeyError(f"No class {name!r} in this segmentation; its classes are {list(self.classes)}.")
        return (self.label_map == self.classes.index(name) + 1).astype(np.uint8)


def resolve_overlaps(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The overlap rule: each pixel takes the most probable class where that probability exceeds
    ``threshold``, else background (0); equal probabilities go to the class listed first.

    With one class and the default 0.5 this is ``predict``'s mask (target where its softmax wins).

    Args:
        probabilities: ``(N, H, W)`` per-class target probabilities.
        threshold: in [0, 1).

    Returns:
        ``uint8 (H, W)`` label map, ``i`` = the i-th class (1-based).
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}.")
    if probabilities.ndim != 3 or not 1 <= probabilities.shape[0] <= MAX_CLASSES:
        raise ValueError(f"probabilities must be (N, H, W) with 1 <= N <= {MAX_CLASSES}, got {probabilities.shape}.")
    best = probabilities.argmax(axis=0)
    return np.where(probabilities.max(axis=0) > threshold, best + 1, 0).astype(np.uint8)


def encode_supports(
    model: FewShotSegmenter,
    supports: Mapping[str, Any],
    *,
    device: str | torch.device | None = None,
    precision: str = "auto",
    mask_threshold: float | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> dict[str, SupportFeatures]:
    """Encode every class's supports once: ``{name: (images, annotations)}`` -> ``{name: SupportFeatures}``.

    A value may already be a :class:`SupportFeatures` (kept as is). Images and annotations take every form
    :func:`~ntre_zoo.inference.predict.predict` accepts (masks, boxes, points, scribbles); ``mask_threshold``
    binarises soft masks and ``max_pixels`` caps image sizes as there.

    Raises:
        TypeError, ValueError: not a mapping, no class, a name that is not a non-empty string, too many
            classes, or a value that is not an ``(images, annotations)`` pair; support errors name the class.
    """
    mask_threshold = check_mask_threshold(mask_threshold)
    max_pixels = check_max_pixels(max_pixels)
    device, dtype = _placed(model, device, precision)
    return _encode_supports(model, supports, device, dtype, mask_threshold, max_pixels)


def _encode_supports(
    model: FewShotSegmenter,
    supports: Mapping[str, Any],
    device: torch.device,
    dtype: torch.dtype | None,
    mask_threshold: float | None,
    max_pixels: int | None,
) -> dict[str, SupportFeatures]:
    """:func:`encode_supports` with the arguments its public caller checked and resolved (the model on
    ``device``, ``dtype`` the autocast dtype or None for fp32)."""
    if not isinstance(supports, Mapping) or not supports:
        raise TypeError(
            'supports must be a non-empty mapping {"name": (images, annotations), ...}, got '
            f"{type(supports).__name__ if not isinstance(supports, Mapping) else 'an empty mapping'}."
        )
    if len(supports) > MAX_CLASSES:
        raise ValueError(f"At most {MAX_CLASSES} classes fit a label map; got {len(supports)}.")
    encoded = {}
    for name, value in supports.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"Class names must be non-empty strings, got {name!r}.")
        if isinstance(value, SupportFeatures):
            _check_support_fits(model, value)
            encoded[name] = value
            continue
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(
                f"supports[{name!r}] must be an (images, annotations) pair or a SupportFeatures, "
                f"got {type(value).__name__}."
            )
        try:
            encoded[name] = _encode_support(model, value[0], value[1], device, dtype, mask_threshold, max_pixels)
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise type(error)(f"supports[{name!r}]: {error}") from None
    return encoded


def segment(
    model: FewShotSegmenter,
    query: Any,
    supports: Mapping[str, Any],
    *,
    threshold: float = 0.5,
    device: str | torch.device | None = None,
    precision: str = "auto",
    batch_size: int = 4,
    mask_threshold: float | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> Segmentation | list[Segmentation]:
    """Segment several classes in one or several queries.

    Args:
        model: an :class:`~ntre_zoo.NTRENet`.
        query: one image or a list of images (any form ``predict`` takes).
        supports: ``{name: (images, annotations)}``, one entry per class, K supports each (any K, any
            annotation kind), or ``{name: SupportFeatures}`` from ``model.encode_support`` / :func:`encode_supports`.
        threshold: a class needs a probability above this to claim a pixel (:func:`resolve_overlaps`).
        device: run there (the model is moved); default: where the model is.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (see :mod:`ntre_zoo.inference.precision`).
        batch_size: queries per forward pass.
        mask_threshold: binarise soft support masks, as in ``predict`` (default: masks must be binary).
        max_pixels: refuse larger images and masks, as in ``predict`` (default 40 megapixels; None: no cap).

    Returns:
        A :class:`Segmentation` for one query, a list of them for a list.
    """
    device, dtype, encoded, batch_size, max_pixels = _resolve(
        model, supports, threshold, device, precision, batch_size, mask_threshold, max_pixels
    )
    single = not isinstance(query, (list, tuple))
    queries = [query] if single else list(query)
    if not queries:
        raise ValueError("query is an empty list; pass an image or a list of images to segment.")
    view = eval_view(model)
    results = []
    for start in range(0, len(queries), batch_size):
        prepared = [
            prepare_image(model, q, "query" if single else f"query[{start + i}]", max_pixels)
            for i, q in enumerate(queries[start : start + batch_size])
        ]
        results += _segment_batch(view, prepared, encoded, threshold, device, dtype)
    return results[0] if single else results


def _resolve(
    model: FewShotSegmenter,
    supports: Mapping[str, Any],
    threshold: float,
    device: str | torch.device | None,
    precision: str,
    batch_size: int,
    mask_threshold: float | None,
    max_pixels: int | None,
) -> tuple[torch.device, torch.dtype | None, dict[str, SupportFeatures], int, int | None]:
    """Check the options :func:`segment` and :func:`~ntre_zoo.inference.stream.iter_segment` share, place the
    model and encode the supports: ``(device, autocast dtype, encoded supports, batch_size, max_pixels)``.

    Raises:
        TypeError, ValueError: naming the option and its value.
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}.")
    mask_threshold = check_mask_threshold(mask_threshold)
    max_pixels = check_max_pixels(max_pixels)
    placed, dtype = _placed(model, device, precision)  # one resolution for every class
    encoded = _encode_supports(model, supports, placed, dtype, mask_threshold, max_pixels)
    return placed, dtype, encoded, batch_size, max_pixels


def _segment_batch(
    view: Any,
    prepared: Sequence[tuple[torch.Tensor, tuple[int, int]]],
    encoded: Mapping[str, SupportFeatures],
    threshold: float,
    device: torch.device,
    dtype: torch.dtype | None,
) -> list[Segmentation]:
    """One forward pass: queries from :func:`~ntre_zoo.inference.predict.prepare_image` -> their
    :class:`Segmentation` s, in order.

    Args:
        view: the model in eval mode (``eval_view(model)``), on ``device``.
        prepared: ``(canvas (3, S, S), (H, W))`` per query.
        encoded: ``{name: SupportFeatures}``, every class's supports.
        threshold: the overlap rule's (:func:`resolve_overlaps`).
        device: where the model is.
        dtype: the autocast dtype, or None for fp32.
    """
    names = tuple(encoded)
    sizes = [hw for _, hw in prepared]
    batch = _to_device(torch.stack([canvas for canvas, _ in prepared]), view, device)
    with _inference(device, dtype):
        features = view.encode_query(batch)
        outputs = [view.decode(features, encoded[name].to(device)) for name in names]
    per_class = [_to_original(out, sizes, True) for out in outputs]
    results = []
    for i in range(len(prepared)):
        predictions = [column[i] for column in per_class]
        probabilities = np.stack([p.probability for p in predictions])
        results.append(
            Segmentation(
                classes=names,
                label_map=resolve_overlaps(probabilities, threshold),
                probabilities=probabilities,
                bg_map=predictions[0].bg_map,
                do_maps=np.stack([p.do_map for p in predictions]),
            )
        )
    return results
