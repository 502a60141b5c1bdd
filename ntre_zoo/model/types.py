"""What NTRENet passes between its stages (support and query encodings, the forward output) and the
interface the other wings call (:class:`FewShotSegmenter`).

Inference, evaluation, training and the zoo type their ``model`` arguments with these; none of them
imports the model class, so no import leads back to :mod:`ntre_zoo.model.ntrenet`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from .config import ModelConfig

__all__ = ["FewShotSegmenter", "NTRENetOutput", "QueryFeatures", "SupportFeatures"]


def _optional(t: torch.Tensor | None, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | None:
    return None if t is None else fn(t)


def _cat(values: Sequence[torch.Tensor | None], dim: int) -> torch.Tensor | None:
    """Concatenate, or None when any value is None (the training-only fields of an inference encoding)."""
    present = [v for v in values if v is not None]
    return torch.cat(present, dim=dim) if len(present) == len(values) else None


@dataclass
class SupportFeatures:
    """What a support set contributes to every query; reusable across queries (``NTRENet.encode_support``).

    Shapes (h, w: the support's layer3 size; B: batch; K: shots; C: ``reduce_dim``):
        features: reduced support features ``(B, K, C, h, w)``, before masking (None where only inference
            follows: they feed the training losses alone).
        masks: target masks resized to ``(h, w)``, soft at borders ``(B, K, 1, h, w)`` (None likewise).
        prototype: K-averaged masked-average-pooled target prototype ``(B, C, 1, 1)``.
        masked_high: masked layer4 features ``(B, K, C4, h4, w4)`` for the prior mask.
    """

    features: torch.Tensor | None
    masks: torch.Tensor | None
    prototype: torch.Tensor
    masked_high: torch.Tensor

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> SupportFeatures:
        return SupportFeatures(
            _optional(self.features, fn), _optional(self.masks, fn), fn(self.prototype), fn(self.masked_high)
        )

    @property
    def batch_size(self) -> int:
        return self.prototype.shape[0]

    @property
    def shot(self) -> int:
        return self.masked_high.shape[1]

    def to(self, *args: Any, **kwargs: Any) -> SupportFeatures:
        return self._apply(lambda t: t.to(*args, **kwargs))

    def expand(self, batch_size: int) -> SupportFeatures:
        """Repeat a single-episode support set (B=1) for ``batch_size`` queries."""
        if self.batch_size == batch_size:
            return self
        if self.batch_size != 1:
            raise ValueError(
                f"Cannot expand a support set of batch {self.batch_size} to {batch_size}; it must hold 1 episode."
            )
        return self._apply(lambda t: t.expand(batch_size, *t.shape[1:]))

    @staticmethod
    def cat(items: Sequence[SupportFeatures]) -> SupportFeatures:
        """Stack several episodes' support sets (same K and sizes) along the batch."""
        return SupportFeatures(
            _cat([item.features for item in items], 0),
            _cat([item.masks for item in items], 0),
            torch.cat([item.prototype for item in items]),
            torch.cat([item.masked_high for item in items]),
        )

    @staticmethod
    def combine_shots(shots: Sequence[SupportFeatures]) -> SupportFeatures:
        """K one-shot encodings of the same episode -> its K-shot encoding (prototype averaged over shots)."""
        return SupportFeatures(
            _cat([item.features for item in shots], 1),
            _cat([item.masks for item in shots], 1),
            torch.stack([item.prototype for item in shots]).mean(dim=0),
            torch.cat([item.masked_high for item in shots], dim=1),
        )


@dataclass
class QueryFeatures:
    """A query's encoding, reusable with several support sets (``NTRENet.encode_query``).

    Shapes: ``features (B, C, h, w)`` reduced mid-level features, ``high (B, C4, h4, w4)`` layer4
    features for the prior; ``input_size`` is the query's ``(H, W)``.
    """

    features: torch.Tensor
    high: torch.Tensor
    input_size: tuple[int, int]

    def expand(self, batch_size: int) -> QueryFeatures:
        """Repeat a single query (B=1) for ``batch_size`` support sets."""
        if self.features.shape[0] == batch_size:
            return self
        if self.features.shape[0] != 1:
            raise ValueError(f"Cannot expand {self.features.shape[0]} queries to {batch_size}; it must hold 1 query.")
        return QueryFeatures(
            self.features.expand(batch_size, -1, -1, -1), self.high.expand(batch_size, -1, -1, -1), self.input_size
        )


@dataclass
class NTRENetOutput:
    """Everything one forward pass produces.

    Shapes (H, W: input size; h, w: feature size, 60 for a 473 ResNet input; n: a bin's size):
        logits: final 2-class logits at the input size ``(B, 2, H, W)``; channel 1 = target.
        head_logits: the same before upsampling ``(B, 2, h, w)``.
        bg_logits: query BG-mining logits ``(B, 2, h, w)``; channel 1 = background (None without BG mining).
        prior: training-free prior mask, K-averaged ``(B, 1, h, w)``.
        do_masks: per bin, the distracting-object mask the model eliminated ``(B, 1, n, n)`` (empty without DOEM).
        initial_logits: per bin, the initial prediction used to find DOs ``(B, 2, n, n)``.
        bin_logits: per bin, final logits (training only, else empty) ``(B, 2, n, n)``.
        query_features: reduced query features ``(B, C, h, w)``.
        support: the support encoding used.
        support_bg_logits: per-shot support BG logits in training ``(B, K, 2, hs, ws)``, else (and without BG
            mining) None.
    """

    logits: torch.Tensor
    head_logits: torch.Tensor
    bg_logits: torch.Tensor | None
    prior: torch.Tensor
    do_masks: list[torch.Tensor]
    initial_logits: list[torch.Tensor]
    bin_logits: list[torch.Tensor] = field(default_factory=list)
    query_features: torch.Tensor | None = None
    support: SupportFeatures | None = None
    support_bg_logits: torch.Tensor | None = None


class FewShotSegmenter(Protocol):
    """What the inference, evaluation and zoo code use of a model (:class:`~ntre_zoo.NTRENet` provides it)."""

    config: ModelConfig
    training: bool
    fast_inference: bool

    def __call__(self, query: torch.Tensor, *args: Any, **kwargs: Any) -> NTRENetOutput: ...

    def encode_support(self, support_images: Any, support_masks: Any, **kwargs: Any) -> SupportFeatures: ...

    def encode_support_tensors(self, support_images: torch.Tensor, support_masks: torch.Tensor) -> SupportFeatures: ...

    def encode_query(self, query: torch.Tensor) -> QueryFeatures: ...

    def decode(self, query: QueryFeatures, support: SupportFeatures) -> NTRENetOutput: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...
