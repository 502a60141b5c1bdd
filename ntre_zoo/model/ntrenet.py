"""NTRENet: "Learning Non-target Knowledge for Few-shot Semantic Segmentation", Liu et al., CVPR 2022.

The computation follows the authors' code (github.com/LIUYUANWEI98/NERTNet, model/ourmodel.py), which
differs from the paper in places (per-bin BGEM/FM/DOEM, an unnormalised DO prototype, a 256-channel
zero-initialised BG prototype); ``docs/architecture.md`` lists those choices. The authors released
no weights; the zoo's weights are trained with this package (see ``checkpoints_manifest.json``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .backbones import Backbone, create_backbone
from .config import ModelConfig
from .heads import (
    BackgroundMining,
    PyramidBin,
    bin_size,
    prior_mask,
    reduction,
    residual_pair,
    resize,
    weighted_gap,
)
from .heads import classifier as make_classifier
from .mixin import ModelMixin
from .types import NTRENetOutput, QueryFeatures, SupportFeatures

__all__ = ["NTRENet"]


class NTRENet(ModelMixin, nn.Module):
    """NTRENet few-shot segmenter on a frozen timm backbone.

    Args:
        config: the architecture (:class:`ntre_zoo.model.config.ModelConfig`).
        pretrained_backbone: fetch timm's ImageNet weights for the backbone.

    Call ``model(query, support_images, support_masks)`` for tensors, or ``model.predict(...)`` for images.
    """

    def __init__(self, config: ModelConfig, pretrained_backbone: bool = False) -> None:
        super().__init__()
        self.config = config
        c = config.reduce_dim
        self.backbone: Backbone = create_backbone(config.backbone, pretrained=pretrained_backbone)
        self.bg_prototype = nn.Parameter(torch.zeros(1, c * config.bg_prototypes, 1, 1)) if config.bg_mining else None
        self.down_query = reduction(self.backbone.mid_channels, c, config.reduce_dropout)
        self.down_support = reduction(self.backbone.mid_channels, c, config.reduce_dropout)
        self.bg_mining = (
            BackgroundMining(c, config.reduce_dropout, config.classifier_dropout) if config.bg_mining else None
        )
        self.bins = nn.ModuleList(
            PyramidBin(c, config.classifier_dropout, i == 0, config.bg_eliminating, config.do_eliminating)
            for i in range(len(config.pyramid_bins))
        )
        self.fuse = nn.Sequential(nn.Conv2d(c * len(config.pyramid_bins), c, 1, bias=False), nn.ReLU(inplace=True))
        self.fuse_refine = residual_pair(c)
        self.classifier = make_classifier(c, config.classifier_dropout)
        #: Inference shortcuts that keep the logits equal to float tolerance: the prior skips masked-out
        #: support positions, eval mode skips the per-bin classifiers that only feed training losses, and
        #: ``predict`` runs channels_last. False gives the plain reference computation (the benchmarks'
        #: baseline).
        self.fast_inference = True
        #: The ``metadata`` of ``config.json`` when loaded by ``from_pretrained`` (dataset, fold, metrics ...).
        self.pretrained_metadata: dict[str, Any] = {}

    # ------------------------------------------------------------------ features
    def _backbone_mid(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.backbone.forward_mid(images)

    def encode_support_tensors(self, support_images: torch.Tensor, support_masks: torch.Tensor) -> SupportFeatures:
        _check_support(support_images, support_masks)
        b, k = support_images.shape[:2]
        target = (support_masks == 1).to(support_images.dtype).unsqueeze(2)
        # In train mode the reference runs each shot through the backbone separately, so train-mode BN sees
        # batches of B; in eval mode all shots go through in one batch (identical numbers, less overhead).
        groups = [slice(i, i + 1) for i in range(k)] if self.backbone.training else [slice(0, k)]
        mids, masks, highs = [], [], []
        for g in groups:
            n = g.stop - g.start
            images = support_images[:, g].flatten(0, 1)
            layer2, layer3 = self._backbone_mid(images)
            mask = resize(target[:, g].flatten(0, 1), layer3.shape[-2:])
            with torch.no_grad():
                high = self.backbone.forward_high(layer3 * mask)
                high = high * resize(target[:, g].flatten(0, 1), high.shape[-2:])
            mids.append(torch.cat([layer3, layer2], dim=1).unflatten(0, (b, n)))
            masks.append(mask.unflatten(0, (b, n)))
            highs.append(high.unflatten(0, (b, n)))
        mid, mask, high = (torch.cat(x, dim=1) for x in (mids, masks, highs))
        features = self.down_support(mid.flatten(0, 1))
        flat_mask = mask.flatten(0, 1)
        prototype = weighted_gap(features, flat_mask).unflatten(0, (b, k)).mean(dim=1)
        return SupportFeatures(features.unflatten(0, (b, k)), mask, prototype, high)

    def _prior(self, query_high: torch.Tensor, support: SupportFeatures, size: tuple[int, int]) -> torch.Tensor:
        """K-averaged prior mask ``(B, 1, *size)``."""
        b, k = support.masked_high.shape[:2]
        query = query_high.unsqueeze(1).expand(-1, k, -1, -1, -1).flatten(0, 1)
        prior = prior_mask(query, support.masked_high.flatten(0, 1), skip_empty=self.fast_inference)
        prior = resize(prior, size).unflatten(0, (b, k)).mean(dim=1)
        return prior

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        query: torch.Tensor,
        support_images: torch.Tensor | None = None,
        support_masks: torch.Tensor | None = None,
        *,
        support: SupportFeatures | None = None,
    ) -> NTRENetOutput:
        """Segment ``query`` given a support set.

        Args:
            query: ``(B, 3, H, W)`` normalised images. Any H, W: the reference asserts ``(H - 1) % 8 == 0``
                and square maps only because of how it computes sizes; here every size is derived from the
                actual feature maps, which gives the reference's numbers on its sizes and works on others.
            support_images: ``(B, K, 3, Hs, Ws)``.
            support_masks: ``(B, K, Hs, Ws)``, 1 = target, 0 = not, 255 = ignore.
            support: a precomputed :class:`SupportFeatures` instead of images and masks (B of 1 is broadcast).

        Returns:
            :class:`NTRENetOutput`; ``.logits`` is ``(B, 2, H, W)``.
        """
        if support is None:
            if support_images is None or support_masks is None:
                raise ValueError("Pass support_images and support_masks, or a precomputed support=.")
            support = self.encode_support_tensors(support_images, support_masks)
        return self.decode(self.encode_query(query), support)

    def encode_query(self, query: torch.Tensor) -> QueryFeatures:
        """Backbone and reduction of ``(B, 3, H, W)`` normalised queries, reusable across support sets."""
        if query.dim() != 4 or query.shape[1] != 3:
            raise ValueError(f"query must have shape (B, 3, H, W), got {tuple(query.shape)}.")
        layer2, layer3 = self._backbone_mid(query)
        with torch.no_grad():
            high = self.backbone.forward_high(layer3)
        return QueryFeatures(
            self.down_query(torch.cat([layer3, layer2], dim=1)), high, (query.shape[-2], query.shape[-1])
        )

    def decode(self, query: QueryFeatures, support: SupportFeatures) -> NTRENetOutput:
        """The NTRENet head on encoded queries and supports (a batch of 1 on either side is broadcast)."""
        batch = max(query.features.shape[0], support.batch_size)
        query, support = query.expand(batch), support.expand(batch)
        # 1. Prior mask from layer4 of query and supports.
        q = query.features
        size = (q.shape[-2], q.shape[-1])
        prior = self._prior(query.high, support, size)

        # 2. Background mining on the query (and, for the training loss, on every support shot).
        bg_logits = None if self.bg_mining is None else self.bg_mining(q, self.bg_prototype)
        support_bg_logits = None
        if self.training and self.bg_mining is not None:
            if support.features is None:
                raise ValueError("Training needs support features; encode the support set in train mode.")
            support_bg_logits = self.bg_mining(support.features.flatten(0, 1), self.bg_prototype)
            support_bg_logits = support_bg_logits.unflatten(0, tuple(support.features.shape[:2]))

        # 3. Pyramid bins, fine to coarse: BGEM, FM, DOEM, FEM merge.
        pyramid, initial_logits, do_masks, bin_logits = [], [], [], []
        previous = None
        for value, block in zip(self.config.pyramid_bins, self.bins, strict=False):
            x, initial, do_mask, logits = block(
                q,
                support.prototype,
                self.bg_prototype,
                prior,
                bg_logits,
                previous,
                bin_size(value, size),
                with_classifier=self.training or not self.fast_inference,
            )
            previous = resize(x, size)
            pyramid.append(previous)
            initial_logits.append(initial)
            if do_mask is not None:
                do_masks.append(do_mask)
            if logits is not None:
                bin_logits.append(logits)

        # 4. Final head on the concatenated pyramid, upsampled to the input size.
        x = self.fuse(torch.cat(pyramid, dim=1))
        x = self.fuse_refine(x) + x
        head_logits = self.classifier(x)
        return NTRENetOutput(
            logits=resize(head_logits, query.input_size),
            head_logits=head_logits,
            bg_logits=bg_logits,
            prior=prior,
            do_masks=do_masks,
            initial_logits=initial_logits,
            bin_logits=bin_logits,
            query_features=q,
            support=support,
            support_bg_logits=support_bg_logits,
        )

    # ------------------------------------------------------------------ helpers
    def head_parameters(self) -> list[nn.Parameter]:
        """Every trainable (non-backbone) parameter."""
        return [p for name, p in self.named_parameters() if not name.startswith("backbone.")]

    def extra_repr(self) -> str:
        return f"backbone={self.config.backbone.name!r}, shot={self.config.shot}, reduce_dim={self.config.reduce_dim}"


def _check_support(support_images: torch.Tensor, support_masks: torch.Tensor) -> None:
    if support_images.dim() != 5 or support_images.shape[2] != 3:
        raise ValueError(f"support_images must have shape (B, K, 3, H, W), got {tuple(support_images.shape)}.")
    expected = (*support_images.shape[:2], *support_images.shape[-2:])
    if support_masks.dim() != 4 or tuple(support_masks.shape) != expected:
        raise ValueError(
            f"support_masks has shape {tuple(support_masks.shape)} but support_images implies {expected}; "
            "pass one (H, W) mask per support image."
        )
