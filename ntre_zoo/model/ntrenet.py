"""NTRENet: "Learning Non-target Knowledge for Few-shot Semantic Segmentation", Liu et al., CVPR 2022.

The computation follows the authors' code (github.com/LIUYUANWEI98/NERTNet, model/ourmodel.py), which
differs from the paper in places (per-bin BGEM/FM/DOEM, an unnormalised DO prototype, a 256-channel
zero-initialised BG prototype); ``docs/architecture.md`` lists those choices. The authors released
no weights; the zoo's weights are trained with this package (see ``checkpoints_manifest.json``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..backbones import Backbone, create_backbone
from ..config import ModelConfig
from .heads import BackgroundMining, PyramidBin, bin_size, prior_mask, reduction, residual_pair, resize, weighted_gap
from .heads import classifier as make_classifier

__all__ = ["NTRENet", "NTRENetOutput", "QueryFeatures", "SupportFeatures"]


def _map(fields: Sequence[Optional[torch.Tensor]], fn) -> List[Optional[torch.Tensor]]:
    return [None if t is None else fn(t) for t in fields]


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

    features: Optional[torch.Tensor]
    masks: Optional[torch.Tensor]
    prototype: torch.Tensor
    masked_high: torch.Tensor

    def _fields(self) -> List[Optional[torch.Tensor]]:
        return [self.features, self.masks, self.prototype, self.masked_high]

    @property
    def batch_size(self) -> int:
        return self.prototype.shape[0]

    @property
    def shot(self) -> int:
        return self.masked_high.shape[1]

    def to(self, *args: Any, **kwargs: Any) -> "SupportFeatures":
        return SupportFeatures(*_map(self._fields(), lambda t: t.to(*args, **kwargs)))

    def expand(self, batch_size: int) -> "SupportFeatures":
        """Repeat a single-episode support set (B=1) for ``batch_size`` queries."""
        if self.batch_size == batch_size:
            return self
        if self.batch_size != 1:
            raise ValueError(f"Cannot expand a support set of batch {self.batch_size} to {batch_size}; it must hold 1 episode.")
        return SupportFeatures(*_map(self._fields(), lambda t: t.expand(batch_size, *t.shape[1:])))

    @staticmethod
    def cat(items: Sequence["SupportFeatures"]) -> "SupportFeatures":
        """Stack several episodes' support sets (same K and sizes) along the batch."""
        columns = list(zip(*(item._fields() for item in items)))
        return SupportFeatures(*(None if None in col else torch.cat(col) for col in columns))

    @staticmethod
    def combine_shots(shots: Sequence["SupportFeatures"]) -> "SupportFeatures":
        """K one-shot encodings of the same episode -> its K-shot encoding (prototype averaged over shots)."""
        columns = list(zip(*(item._fields() for item in shots)))
        features, masks, _, high = (None if None in col else torch.cat(col, dim=1) for col in columns)
        prototype = torch.stack([item.prototype for item in shots]).mean(dim=0)
        return SupportFeatures(features, masks, prototype, high)


@dataclass
class QueryFeatures:
    """A query's encoding, reusable with several support sets (``NTRENet.encode_query``).

    Shapes: ``features (B, C, h, w)`` reduced mid-level features, ``high (B, C4, h4, w4)`` layer4
    features for the prior; ``input_size`` is the query's ``(H, W)``.
    """

    features: torch.Tensor
    high: torch.Tensor
    input_size: Tuple[int, int]

    def expand(self, batch_size: int) -> "QueryFeatures":
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
    bg_logits: Optional[torch.Tensor]
    prior: torch.Tensor
    do_masks: List[torch.Tensor]
    initial_logits: List[torch.Tensor]
    bin_logits: List[torch.Tensor] = field(default_factory=list)
    query_features: Optional[torch.Tensor] = None
    support: Optional[SupportFeatures] = None
    support_bg_logits: Optional[torch.Tensor] = None


class NTRENet(nn.Module):
    """NTRENet few-shot segmenter on a frozen timm backbone.

    Args:
        config: the architecture (:class:`ntre_zoo.config.ModelConfig`).
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

    # ------------------------------------------------------------------ features
    def _backbone_mid(self, images: torch.Tensor):
        with torch.no_grad():
            return self.backbone.forward_mid(images)

    def encode_support(self, support_images: Any, support_masks: Any, **kwargs: Any) -> SupportFeatures:
        """Encode a support set once so that it can serve many queries (``predict(support, queries)``).

        Args:
            support_images: ``(B, K, 3, H, W)`` normalised images, or images in any form ``predict``
                takes (one or a list of K), which are then preprocessed as ``predict`` does.
            support_masks: ``(B, K, H, W)`` with 1 = target, 0 = not, 255 = ignore (counts as not
                target), or masks in any form ``predict`` takes.
            **kwargs: ``device``/``amp_dtype`` for the image form.

        Returns:
            :class:`SupportFeatures`.
        """
        if not (isinstance(support_images, torch.Tensor) and support_images.dim() == 5):
            from ..inference import encode_support

            return encode_support(self, support_images, support_masks, **kwargs)
        return self._encode_support_tensors(support_images, support_masks)

    def _encode_support_tensors(self, support_images: torch.Tensor, support_masks: torch.Tensor) -> SupportFeatures:
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

    def _prior(self, query_high: torch.Tensor, support: SupportFeatures, size) -> torch.Tensor:
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
        support_images: Optional[torch.Tensor] = None,
        support_masks: Optional[torch.Tensor] = None,
        *,
        support: Optional[SupportFeatures] = None,
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
            support = self._encode_support_tensors(support_images, support_masks)
        return self.decode(self.encode_query(query), support)

    def encode_query(self, query: torch.Tensor) -> QueryFeatures:
        """Backbone and reduction of ``(B, 3, H, W)`` normalised queries, reusable across support sets."""
        if query.dim() != 4 or query.shape[1] != 3:
            raise ValueError(f"query must have shape (B, 3, H, W), got {tuple(query.shape)}.")
        layer2, layer3 = self._backbone_mid(query)
        with torch.no_grad():
            high = self.backbone.forward_high(layer3)
        return QueryFeatures(self.down_query(torch.cat([layer3, layer2], dim=1)), high, tuple(query.shape[-2:]))

    def decode(self, query: QueryFeatures, support: SupportFeatures) -> NTRENetOutput:
        """The NTRENet head on encoded queries and supports (a batch of 1 on either side is broadcast)."""
        batch = max(query.features.shape[0], support.batch_size)
        query, support = query.expand(batch), support.expand(batch)
        # 1. Prior mask from layer4 of query and supports.
        q = query.features
        size = tuple(q.shape[-2:])
        prior = self._prior(query.high, support, size)

        # 2. Background mining on the query (and, for the training loss, on every support shot).
        bg_logits = None if self.bg_mining is None else self.bg_mining(q, self.bg_prototype)
        support_bg_logits = None
        if self.training and self.bg_mining is not None:
            support_bg_logits = self.bg_mining(support.features.flatten(0, 1), self.bg_prototype)
            support_bg_logits = support_bg_logits.unflatten(0, tuple(support.features.shape[:2]))

        # 3. Pyramid bins, fine to coarse: BGEM, FM, DOEM, FEM merge.
        pyramid, initial_logits, do_masks, bin_logits = [], [], [], []
        previous = None
        for value, block in zip(self.config.pyramid_bins, self.bins):
            x, initial, do_mask, logits = block(
                q, support.prototype, self.bg_prototype, prior, bg_logits, previous, bin_size(value, size),
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
    def head_parameters(self) -> List[nn.Parameter]:
        """Every trainable (non-backbone) parameter."""
        return [p for name, p in self.named_parameters() if not name.startswith("backbone.")]

    def predict(self, support_imgs: Any, support_masks: Any = None, query: Any = None, **kwargs: Any):
        """Segment images from a few annotated supports; see :func:`ntre_zoo.inference.predict`."""
        from ..inference import predict

        return predict(self, support_imgs, support_masks, query, **kwargs)

    def save_pretrained(self, save_directory: Any, *, metadata: Optional[dict] = None) -> Any:
        """Write ``config.json``, ``model.safetensors`` and a model card; see :func:`ntre_zoo.hub.save_pretrained`."""
        from ..hub import save_pretrained

        return save_pretrained(self, save_directory, metadata=metadata)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload to a Hub repository and print the manifest entry; see :func:`ntre_zoo.hub.push_to_hub`."""
        from ..hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

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
