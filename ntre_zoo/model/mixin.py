"""``ModelMixin``: the model's convenience methods (predict, segment, encode_support, save_pretrained, push_to_hub).

As ``transformers``/``huggingface_hub`` models do, NTRENet carries these methods, but they live here and
call the inference and zoo functions. This module never imports the model class, so the model's file
imports it and nothing imported from here leads back to the model (no import circle).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ..inference.predict import encode_support, predict
from ..inference.segment import segment
from ..inference.video import FrameResult, predict_video, segment_video
from ..zoo.publish import PushResult, push_to_hub
from ..zoo.saving import save_pretrained
from .types import FewShotSegmenter, SupportFeatures

__all__ = ["ModelMixin"]


class ModelMixin:
    """Image-level and Hub methods for a class that implements :class:`~ntre_zoo.model.types.FewShotSegmenter`."""

    def encode_support(
        self: FewShotSegmenter, support_images: Any, support_masks: Any, **kwargs: Any
    ) -> SupportFeatures:
        """Encode a support set once so that it can serve many queries (``predict(support, queries)``).

        Args:
            support_images: ``(B, K, 3, H, W)`` normalised images, or images in any form ``predict``
                takes (one or a list of K), which are then preprocessed as ``predict`` does.
            support_masks: ``(B, K, H, W)`` with 1 = target, 0 = not, 255 = ignore (counts as not
                target), or masks in any form ``predict`` takes.
            **kwargs: ``device``, ``precision``, ``mask_threshold``, ``max_pixels`` for the image form
                (``amp_dtype`` still works, with a ``DeprecationWarning``: use ``precision``).

        Returns:
            :class:`~ntre_zoo.model.types.SupportFeatures`.
        """
        if isinstance(support_images, torch.Tensor) and support_images.dim() == 5:
            return self.encode_support_tensors(support_images, support_masks)
        return encode_support(self, support_images, support_masks, **kwargs)

    def predict(
        self: FewShotSegmenter, support_imgs: Any, support_masks: Any = None, query: Any = None, **kwargs: Any
    ) -> Any:
        """Segment images from a few annotated supports; see :func:`ntre_zoo.inference.predict.predict`."""
        return predict(self, support_imgs, support_masks, query, **kwargs)

    def segment(self: FewShotSegmenter, query: Any, supports: Mapping[str, Any], **kwargs: Any) -> Any:
        """Segment several classes at once, ``supports = {"dog": (imgs, masks), "cat": (imgs, boxes)}``;
        see :func:`ntre_zoo.inference.segment.segment`."""
        return segment(self, query, supports, **kwargs)

    def predict_video(
        self: FewShotSegmenter, support_imgs: Any, support_masks: Any = None, source: Any = None, **kwargs: Any
    ) -> Iterator[FrameResult]:
        """Segment a video (file or iterable of frames) from annotated supports encoded once, streaming; see
        :func:`ntre_zoo.inference.video.predict_video`."""
        return predict_video(self, support_imgs, support_masks, source, **kwargs)

    def segment_video(
        self: FewShotSegmenter, source: Any, supports: Mapping[str, Any], **kwargs: Any
    ) -> Iterator[FrameResult]:
        """Segment several classes in every frame of a video, streaming; see
        :func:`ntre_zoo.inference.video.segment_video`."""
        return segment_video(self, source, supports, **kwargs)

    def save_pretrained(
        self: FewShotSegmenter, save_directory: Any, *, metadata: Mapping[str, Any] | None = None
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a model card (``zoo.saving``)."""
        return save_pretrained(self, save_directory, metadata=metadata)

    def push_to_hub(self: FewShotSegmenter, repo_id: str, **kwargs: Any) -> PushResult:
        """Upload to a Hub repository and print the manifest entry; see :func:`ntre_zoo.zoo.publish.push_to_hub`."""
        return push_to_hub(self, repo_id, **kwargs)
