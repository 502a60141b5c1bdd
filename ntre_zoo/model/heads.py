"""NTRENet head blocks: background mining (BGMM) and one pyramid bin of BGEM, FM, DOEM and FEM.

Sequential indices match the reference (``.0`` first conv, ``.2`` second conv of a residual pair,
``.3`` the classifier's 1x1 conv), so reference checkpoints map onto these modules by renaming only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BackgroundMining", "PyramidBin", "bin_size", "prior_mask", "resize", "weighted_gap"]


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=True``, the mode of every resize inside the reference model."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def weighted_gap(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked average pooling ``sum(f*m) / (sum(m) + 5e-4)``: ``(B, C, h, w), (B, 1, h, w) -> (B, C, 1, 1)``."""
    area = mask.sum(dim=(2, 3), keepdim=True) + 5e-4
    return (features * mask).sum(dim=(2, 3), keepdim=True) / area


def prior_mask(
    query_high: torch.Tensor, support_high: torch.Tensor, eps: float = 1e-7, skip_empty: bool = True
) -> torch.Tensor:
    """PFENet's training-free prior: per query pixel, the max cosine similarity to any masked support pixel,
    min-max normalised per image.

    Shapes: ``query_high (B, C, h, w)``, ``support_high (B, C, hs, ws)`` (already masked) -> ``(B, 1, h, w)``.
    The reference assumes square maps; here both sides may be any size.

    With ``skip_empty`` the similarities are computed only for support positions whose feature is not
    all zero (the masked-out ones): a zero vector's similarity is exactly ``0 / (0 + eps) = 0``, so the
    result is the dense one with ``max(., 0)`` wherever any position was skipped, at a fraction of the
    cost when the target is small. ``skip_empty=False`` is the reference's dense computation.

    Under autocast the similarities are computed in float32 (the products of 2048-channel layer4 features
    overflow float16) and returned in the input's dtype; without autocast the inputs' dtype is used throughout.
    """
    dtype = query_high.dtype
    if torch.is_autocast_enabled(query_high.device.type):  # fp16 products of 2048-channel features overflow
        with torch.autocast(query_high.device.type, enabled=False):
            return prior_mask(query_high.float(), support_high.float(), eps, skip_empty).to(dtype)
    b, c, h, w = query_high.shape
    q = query_high.reshape(b, c, h * w)
    s = support_high.reshape(b, c, -1).transpose(1, 2)
    q_norm = q.norm(2, dim=1, keepdim=True)
    s_norm = s.norm(2, dim=2, keepdim=True)
    if not skip_empty:
        similarity = (torch.bmm(s, q) / (torch.bmm(s_norm, q_norm) + eps)).max(dim=1).values
    else:
        keep = s_norm[..., 0] > 0
        if query_high.device.type == "cpu":  # boolean indexing per image: free on the CPU, and exports to ONNX
            kept_rows, kept_norms = [s[i][keep[i]] for i in range(b)], [s_norm[i][keep[i]] for i in range(b)]
        else:  # on an accelerator, the same rows with two host synchronisations in all instead of one per image
            counts = keep.sum(dim=1).tolist()
            kept_rows, kept_norms = list(s[keep].split(counts)), list(s_norm[keep].split(counts))
        rows = []
        for i in range(b):
            kept = torch.mm(kept_rows[i], q[i]) / (torch.mm(kept_norms[i], q_norm[i]) + eps)
            # One extra row stands for the skipped positions: 0 (their exact similarity) where any was
            # skipped, -inf where none was. No branch on the data, so the graph exports to ONNX as it is.
            skipped = torch.where(keep[i].all(), float("-inf"), 0.0).to(q.dtype).expand(1, h * w)
            rows.append(torch.cat([kept, skipped]).max(dim=0).values)
        similarity = torch.stack(rows)
    lo = similarity.min(dim=1, keepdim=True).values
    hi = similarity.max(dim=1, keepdim=True).values
    similarity = (similarity - lo) / (hi - lo + eps)
    return similarity.view(b, 1, h, w)


def conv_relu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False), nn.ReLU(inplace=True)
    )


def reduction(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """1x1 conv, ReLU, Dropout2d: ``down_query``/``down_supp``/``down_bg`` of the reference."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.ReLU(inplace=True), nn.Dropout2d(p=dropout)
    )


def residual_pair(channels: int) -> nn.Sequential:
    """Two 3x3 conv + ReLU, used as ``x + block(x)``."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.ReLU(inplace=True),
    )


def classifier(channels: int, dropout: float, classes: int = 2) -> nn.Sequential:
    """3x3 conv, ReLU, Dropout2d, 1x1 conv with bias -> 2-class logits."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.ReLU(inplace=True),
        nn.Dropout2d(p=dropout),
        nn.Conv2d(channels, classes, 1),
    )


class BackgroundMining(nn.Module):
    """BGMM (paper Eq. 1-2): segments the background of an image from its reduced features and the learned
    BG prototype. Logit channel 1 = background, channel 0 = not background.

    Reference names: ``down_bg`` -> ``reduce``, ``bg_res1`` -> ``refine``, ``bg_cls`` -> ``classifier``.
    """

    def __init__(self, channels: int, reduce_dropout: float, classifier_dropout: float) -> None:
        super().__init__()
        self.reduce = reduction(2 * channels, channels, reduce_dropout)
        self.refine = residual_pair(channels)
        self.classifier = classifier(channels, classifier_dropout)

    def forward(self, features: torch.Tensor, bg_prototype: torch.Tensor) -> torch.Tensor:
        """``(N, C, h, w)`` features, ``(1, C, 1, 1)`` prototype -> ``(N, 2, h, w)`` BG logits."""
        bg = bg_prototype.expand(features.shape[0], -1, *features.shape[-2:])
        x = self.reduce(torch.cat([features, bg], dim=1))
        x = self.refine(x) + x
        return self.classifier(x)


class PyramidBin(nn.Module):
    """One FEM pyramid bin with NTRENet's eliminations, all at this bin's resolution.

    Reference names (index i of each ModuleList): ``init_merge1`` -> ``bg_eliminating``,
    ``init_merge2`` -> ``feature_matching``, ``inital_beta_conv`` -> ``matching_refine``,
    ``inital_inner_cls`` -> ``initial_classifier``, ``init_merge3`` -> ``do_eliminating``,
    ``alpha_conv[i-1]`` -> ``inter_scale_merge`` (absent in the first bin), ``beta_conv`` -> ``refine``,
    ``inner_cls`` -> ``classifier``.
    """

    def __init__(
        self,
        channels: int,
        classifier_dropout: float,
        first: bool,
        bg_eliminating: bool = True,
        do_eliminating: bool = True,
    ) -> None:
        super().__init__()
        c = channels
        self.bg_eliminating: nn.Sequential | None = conv_relu(2 * c, c) if bg_eliminating else None
        self.feature_matching = conv_relu(2 * c + 1, c)
        self.matching_refine = residual_pair(c)
        self.initial_classifier = classifier(c, classifier_dropout)
        self.do_eliminating: nn.Sequential | None = conv_relu(2 * c, c) if do_eliminating else None
        self.inter_scale_merge: nn.Sequential | None = None if first else conv_relu(2 * c, c)
        self.refine = residual_pair(c)
        self.classifier = classifier(c, classifier_dropout)

    def forward(
        self,
        query: torch.Tensor,
        prototype: torch.Tensor,
        bg_prototype: torch.Tensor | None,
        prior: torch.Tensor,
        bg_logits: torch.Tensor | None,
        previous: torch.Tensor | None,
        size: tuple[int, int],
        with_classifier: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Run the bin at ``size``.

        Args:
            query: reduced query features ``(B, C, h, w)``.
            prototype: support target prototype ``(B, C, 1, 1)``.
            bg_prototype: learned BG prototype ``(1, C, 1, 1)`` (None without BG mining).
            prior: prior mask ``(B, 1, h, w)``.
            bg_logits: BG-mining logits of the query ``(B, 2, h, w)`` (None without BG mining).
            previous: the previous (finer) bin's output at ``(h, w)``, or None for the first bin.
            size: this bin's ``(n_h, n_w)``.
            with_classifier: also return the bin's final logits (they only feed a training loss).

        Returns:
            ``(features at size, initial logits (B, 2, *size), DO mask (B, 1, *size) or None without DOEM,
            final logits or None)``.
        """
        b = query.shape[0]
        q = F.adaptive_avg_pool2d(query, size)
        # 1. BG eliminating (Eq. 4): fuse the query with the BG prototype.
        x = q
        if self.bg_eliminating is not None:
            if bg_prototype is None:
                raise ValueError("A bin with BG eliminating needs the BG prototype.")
            x = self.bg_eliminating(torch.cat([q, bg_prototype.expand(b, -1, *size)], dim=1))
        # 2. Feature matching (Eq. 5-6) with the target prototype and the prior mask -> initial prediction.
        x = self.feature_matching(torch.cat([x, prototype.expand(-1, -1, *size), resize(prior, size)], dim=1))
        x = self.matching_refine(x) + x
        initial = self.initial_classifier(x)
        do_mask = None
        if self.do_eliminating is not None:
            if bg_logits is None:
                raise ValueError("A bin with DO eliminating needs the BG-mining logits.")
            # 3. DO mask: neither predicted background nor predicted target (hard argmax, no gradient).
            background = resize(bg_logits, size).argmax(dim=1, keepdim=True)
            target = initial.argmax(dim=1, keepdim=True)
            do_mask = (1 - background - target).clamp_min(0).to(q.dtype)
            # 4. DO eliminating (Eq. 7-9): mean over the whole bin, not divided by the DO area (as the code does).
            do_prototype = (do_mask * q).mean(dim=(2, 3), keepdim=True)
            x = self.do_eliminating(torch.cat([x, do_prototype.expand(-1, -1, *size)], dim=1))
        # 5. FEM inter-scale merge with the previous bin, then refinement.
        if self.inter_scale_merge is not None:
            if previous is None:
                raise ValueError("Every bin after the first merges the previous bin's output; pass previous=.")
            x = self.inter_scale_merge(torch.cat([x, resize(previous, size)], dim=1)) + x
        x = self.refine(x) + x
        logits = self.classifier(x) if with_classifier else None
        return x, initial, do_mask, logits


def bin_size(bin_value: float, feature_size: Sequence[int]) -> tuple[int, int]:
    """A pyramid bin's spatial size: bins > 1 are absolute, bins <= 1 fractions of the feature size."""
    if bin_value > 1:
        return int(bin_value), int(bin_value)
    return max(1, int(feature_size[0] * bin_value)), max(1, int(feature_size[1] * bin_value))
