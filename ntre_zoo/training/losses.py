"""NTRENet training losses: segmentation CE, per-bin auxiliary terms, BG mining and prototype contrast.

Follows the authors' code (``model/ourmodel.py`` and ``model/prototypical_contrast.py`` of
github.com/LIUYUANWEI98/NERTNet) with its defects fixed (spec sections 4, 6.3 and 10):

* every logit map is resized bilinearly (``align_corners=True``) to the label size before its loss;
* nothing is placed with ``.cuda()``: every tensor follows the device of the logits;
* K-shot training works: the BG loss runs on every shot's own features, the PCL positive is the mean of the
  per-shot ground-truth prototypes, and the DO negatives come from every shot.

The total is ``L = L_main + L_BG + 0.4 L_final_bins + 0.6 L_initial_bins + 0.01 L_PCL``; every weight and
constant is a :class:`LossConfig` field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..model.config import check_fields
from ..model.heads import resize, weighted_gap

__all__ = [
    "DOPrototypeBank",
    "LossConfig",
    "LossOutput",
    "NTRENetLoss",
    "bg_mining_loss",
    "bin_loss",
    "distracting_mask",
    "prototype_contrast_loss",
    "segmentation_loss",
]


@dataclass(frozen=True)
class LossConfig:
    """Weights and constants of the NTRENet loss; the defaults are the reference code's.

    Args:
        main_weight: weight of the final head's CE.
        final_bins_weight: weight of the mean CE of the per-bin final heads (``inner_cls``), 0.4.
        initial_bins_weight: weight of the mean CE of the per-bin initial heads (``inital_inner_cls``), 0.6.
        bg_weight: weight of the BG-mining loss.
        bg_alpha: weight of the BG regulariser (CE toward "background" on every pixel), 0.5.
        bg_eps: added to the target area in the BG loss's weighted term, 1e-5.
        pcl_weight: weight of the prototypical contrastive loss, 0.01 (0 switches PCL and its bank off).
        pcl_temperature: PCL temperature tau, 1.
        bank_size: DO prototypes kept per class (newest first), 2000.
        pcl_negatives: negatives sampled from a class's bank for each item, 1000.
        pcl_eps: added inside the PCL log, 1e-8.
        ignore_index: label value excluded from the segmentation CE, 255.
    """

    main_weight: float = 1.0
    final_bins_weight: float = 0.4
    initial_bins_weight: float = 0.6
    bg_weight: float = 1.0
    bg_alpha: float = 0.5
    bg_eps: float = 1e-5
    pcl_weight: float = 0.01
    pcl_temperature: float = 1.0
    bank_size: int = 2000
    pcl_negatives: int = 1000
    pcl_eps: float = 1e-8
    ignore_index: int = 255

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossConfig:
        """Build from ``{field: value}`` (a saved config or ``--loss`` pairs); unknown keys are refused by name."""
        return cls(**check_fields(cls, data))

    def __post_init__(self) -> None:
        for name in ("main_weight", "final_bins_weight", "initial_bins_weight", "bg_weight", "bg_alpha", "pcl_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"LossConfig.{name} must be >= 0, got {getattr(self, name)!r}.")
        if self.pcl_temperature <= 0:
            raise ValueError(f"LossConfig.pcl_temperature must be > 0, got {self.pcl_temperature!r}.")
        if self.bank_size < 1 or self.pcl_negatives < 1:
            raise ValueError(
                f"LossConfig.bank_size and pcl_negatives must be >= 1, got {self.bank_size!r} and "
                f"{self.pcl_negatives!r}."
            )


@dataclass
class LossOutput:
    """The total loss and its terms (unweighted, detached) for logging."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- functions
def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """2-class softmax CE averaged over non-ignored pixels, after resizing ``logits`` to the label size.

    Args:
        logits: ``(B, 2, h, w)``; resized bilinearly (``align_corners=True``) to ``(H, W)``.
        target: ``(B, H, W)`` integer labels, ``ignore_index`` excluded.
        ignore_index: the label value to skip.

    Returns:
        A scalar. When every pixel is ignored it is 0 (with a graph), where ``torch`` would return NaN.
    """
    logits = resize(logits.float(), tuple(target.shape[-2:]))
    target = target.long()
    # The sum over the counted pixels, divided by their count (at least 1): the same bits as the mean reduction,
    # without asking the device whether any pixel counts (a host synchronisation on every call).
    counted = (target != ignore_index).sum().clamp_min(1)
    return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum") / counted


def bin_loss(logits: Sequence[torch.Tensor], target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean :func:`segmentation_loss` over the per-bin logit maps (the reference's ``aux_loss1``/``aux_loss2``)."""
    if len(logits) == 0:
        raise ValueError("bin_loss got no logit maps; run the model in train() mode so it returns its per-bin heads.")
    total = segmentation_loss(logits[0], target, ignore_index)
    for x in logits[1:]:
        total = total + segmentation_loss(x, target, ignore_index)
    return total / len(logits)


def bg_mining_loss(bg_logits: torch.Tensor, mask: torch.Tensor, alpha: float = 0.5, eps: float = 1e-5) -> torch.Tensor:
    """The BG-mining loss of one image set (spec section 4, the reference's ``weighted_BCE`` + regulariser).

    ``mean_b [sum_p T (-log p_0)] / (sum_p T + eps) + alpha * mean_{b,p} (-log p_1)`` with ``T = (mask == 1)``
    and ``p = softmax(bg_logits)``: it pushes "not background" (channel 0) on target pixels and "background"
    (channel 1) everywhere, ignored (255) pixels included, as in the reference.

    Args:
        bg_logits: ``(B, 2, h, w)`` BG logits, resized to the mask size.
        mask: ``(B, H, W)`` labels in {0, 1, 255}.
        alpha: regulariser weight.
        eps: added to the per-image target area.
    """
    logits = resize(bg_logits.float(), tuple(mask.shape[-2:]))
    log_p = F.log_softmax(logits, dim=1)
    target = (mask == 1).to(log_p.dtype)
    weighted = (target * -log_p[:, 0]).sum(dim=(1, 2)) / (target.sum(dim=(1, 2)) + eps)
    return weighted.mean() + alpha * (-log_p[:, 1]).mean()


def _labels_at(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` labels -> ``(N, 1, h, w)`` float, nearest down-sampling, 255 -> 0 (as the reference's PCL)."""
    labels = F.interpolate(mask.unsqueeze(1).float(), size=size, mode="nearest")
    return labels.masked_fill(labels == 255, 0.0)


def distracting_mask(bg_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PCL's DO mask ``relu(1 - argmax(bg_logits) - labels)``: neither predicted BG nor ground-truth target.

    Shapes: ``bg_logits (N, 2, h, w)``, ``labels (N, 1, h, w)`` in {0, 1} -> ``(N, 1, h, w)``.
    """
    background = bg_logits.argmax(dim=1, keepdim=True).to(labels.dtype)
    return (1.0 - background - labels).clamp_min(0.0)


def prototype_contrast_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: Sequence[torch.Tensor],
    temperature: float = 1.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """``mean_i -log(exp(cos(a_i, p_i)/t) / sum_v exp(cos(a_i, v)/t) + eps)`` (paper Eq. 10).

    The positive is not in the denominator, as in the reference and the paper.

    Args:
        anchors: ``(B, C)`` predicted-target query prototypes.
        positives: ``(B, C)`` ground-truth support prototypes.
        negatives: B tensors ``(n_i, C)``, the DO prototypes each item is contrasted with.
        temperature: tau.
        eps: added inside the log.
    """
    if len(negatives) != anchors.shape[0]:
        raise ValueError(f"Got {len(negatives)} negative sets for {anchors.shape[0]} anchors; pass one per item.")
    losses = []
    for anchor, positive, negative in zip(anchors, positives, negatives, strict=False):
        pos = torch.exp(F.cosine_similarity(anchor, positive, dim=0, eps=1e-8) / temperature)
        neg = torch.exp(
            F.cosine_similarity(anchor.unsqueeze(0), negative.to(anchor.dtype), dim=1, eps=1e-8) / temperature
        )
        losses.append(-torch.log(pos / neg.sum() + eps))
    return torch.stack(losses).mean()


# ---------------------------------------------------------------------------------------------- bank
class DOPrototypeBank:
    """Per-class FIFO bank of distracting-object (DO) prototypes, the PCL negatives.

    Each class keeps its ``capacity`` newest prototypes, newest first (row 0). ``update`` prepends the new
    rows of each class in the order given, so passing ``[query DOs; support DOs]`` reproduces the reference.

    Args:
        capacity: prototypes kept per class (2000 in the reference).
    """

    def __init__(self, capacity: int = 2000) -> None:
        if capacity < 1:
            raise ValueError(f"DOPrototypeBank capacity must be >= 1, got {capacity!r}.")
        self.capacity = int(capacity)
        self._entries: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, class_index: int) -> bool:
        return int(class_index) in self._entries

    def classes(self) -> list[int]:
        """Class indices that hold prototypes, sorted."""
        return sorted(self._entries)

    def prototypes(self, class_index: int) -> torch.Tensor:
        """All prototypes of a class, newest first ``(n, C)``."""
        key = int(class_index)
        if key not in self._entries:
            raise KeyError(f"The DO bank holds no prototypes of class {key}; it holds classes {self.classes()}.")
        return self._entries[key]

    @torch.no_grad()
    def update(self, prototypes: torch.Tensor, classes: torch.Tensor) -> None:
        """Prepend new prototypes to their classes' queues and keep the newest ``capacity`` of each.

        Args:
            prototypes: ``(N, C)``; detached and stored as float32.
            classes: ``(N,)`` class indices.
        """
        if prototypes.dim() != 2 or classes.shape != prototypes.shape[:1]:
            raise ValueError(
                f"update expects prototypes (N, C) and classes (N,), got {tuple(prototypes.shape)} and "
                f"{tuple(classes.shape)}."
            )
        prototypes = prototypes.detach().float()
        for c in torch.unique(classes).tolist():  # sorted, as the reference's torch.unique
            new = prototypes[classes == c]
            old = self._entries.get(int(c))
            rows = new if old is None else torch.cat([new, old.to(new.device)], dim=0)
            self._entries[int(c)] = rows[: self.capacity]

    def sample(self, class_index: int, count: int) -> torch.Tensor:
        """At most ``count`` of a class's prototypes, drawn without replacement (``torch.randperm`` on the
        global CPU generator, so that training checkpoints capture it) when there are more."""
        rows = self.prototypes(class_index)
        if rows.shape[0] <= count:
            return rows
        index = torch.randperm(rows.shape[0])[:count]
        return rows[index.to(rows.device)]

    def to(self, device: Any) -> DOPrototypeBank:
        """Move every queue to ``device`` (in place) and return the bank."""
        self._entries = {c: t.to(device) for c, t in self._entries.items()}
        return self

    def state_dict(self) -> dict[str, Any]:
        """``{"capacity": int, "entries": {class_index: (n, C) tensor}}``, for training checkpoints."""
        return {"capacity": self.capacity, "entries": {c: t.clone() for c, t in self._entries.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; a different capacity raises so that a resumed run cannot drift."""
        if set(state) != {"capacity", "entries"}:
            raise KeyError(f"A DO bank state has keys ['capacity', 'entries'], got {sorted(state)}.")
        if int(state["capacity"]) != self.capacity:
            raise ValueError(
                f"The saved DO bank has capacity {state['capacity']!r} but this one {self.capacity!r}; "
                "use the same LossConfig.bank_size to resume."
            )
        self._entries = {int(c): t.clone() for c, t in state["entries"].items()}


# ---------------------------------------------------------------------------------------------- module
class NTRENetLoss(nn.Module):
    """The full training loss of NTRENet; owns the DO prototype bank.

    Args:
        config: weights and constants.
        bank: an existing bank (e.g. restored from a checkpoint); a new one of ``config.bank_size`` otherwise.

    Call it with the model's train-mode :class:`~ntre_zoo.model.NTRENetOutput` and the episode's labels.
    """

    def __init__(self, config: LossConfig | None = None, bank: DOPrototypeBank | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()
        self.bank = bank if bank is not None else DOPrototypeBank(self.config.bank_size)

    def forward(
        self,
        output: Any,
        query_mask: torch.Tensor,
        support_masks: torch.Tensor,
        class_index: torch.Tensor,
        all_gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> LossOutput:
        """Compute the weighted total and update the DO bank.

        Args:
            output: a train-mode ``NTRENetOutput`` (``bin_logits``, ``query_features``, ``support`` and
                ``support_bg_logits`` set).
            query_mask: ``(B, H, W)`` labels in {0, 1, 255}.
            support_masks: ``(B, K, Hs, Ws)`` labels in {0, 1, 255}.
            class_index: ``(B,)`` the episodes' 0-based positions in the training class list (the bank keys).
            all_gather: in distributed training, concatenates a tensor across ranks (rank-major) so that
                every rank adds the same DO prototypes to its bank; None in a single process.

        Returns:
            :class:`LossOutput` with ``total`` (for ``backward``) and the unweighted terms.

        Raises:
            ValueError: ``output`` is not a train-mode output, or the shapes disagree.
        """
        cfg = self.config
        if not output.bin_logits or output.query_features is None or output.support.features is None:
            raise ValueError("NTRENetLoss needs the train-mode outputs of the model; call model.train() first.")
        if output.bg_logits is None and cfg.pcl_weight > 0:
            raise ValueError(
                "PCL takes its negatives from BG mining, which this model has not (bg_eliminating and do_eliminating "
                "are both off); set pcl_weight=0 (`--loss pcl_weight=0`)."
            )
        b, k = output.support.features.shape[:2]
        if query_mask.shape[0] != b or tuple(support_masks.shape[:2]) != (b, k) or class_index.shape != (b,):
            raise ValueError(
                f"Labels do not match the outputs (B={b}, K={k}): query_mask {tuple(query_mask.shape)}, "
                f"support_masks {tuple(support_masks.shape)}, class_index {tuple(class_index.shape)}."
            )
        ignore = cfg.ignore_index
        terms: dict[str, torch.Tensor] = {}
        main_logits = (
            output.logits if tuple(output.logits.shape[-2:]) == tuple(query_mask.shape[-2:]) else output.head_logits
        )
        terms["main"] = segmentation_loss(main_logits, query_mask, ignore)
        terms["final_bins"] = bin_loss(output.bin_logits, query_mask, ignore)
        terms["initial_bins"] = bin_loss(output.initial_logits, query_mask, ignore)
        total = (
            cfg.main_weight * terms["main"]
            + cfg.final_bins_weight * terms["final_bins"]
            + cfg.initial_bins_weight * terms["initial_bins"]
        )
        if output.bg_logits is not None:
            # BG mining: the query and every shot on its own features, averaged over the K + 1 images.
            bg = bg_mining_loss(output.bg_logits, query_mask, cfg.bg_alpha, cfg.bg_eps)
            for shot in range(k):
                bg = bg + bg_mining_loss(
                    output.support_bg_logits[:, shot], support_masks[:, shot], cfg.bg_alpha, cfg.bg_eps
                )
            terms["bg"] = bg / (k + 1)
            total = total + cfg.bg_weight * terms["bg"]
        if cfg.pcl_weight > 0:
            terms["pcl"] = self._contrast(output, query_mask, support_masks, class_index.long(), all_gather)
            total = total + cfg.pcl_weight * terms["pcl"]
        return LossOutput(total=total, terms={name: t.detach() for name, t in terms.items()})

    def _contrast(
        self,
        output: Any,
        query_mask: torch.Tensor,
        support_masks: torch.Tensor,
        classes: torch.Tensor,
        all_gather: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> torch.Tensor:
        """PCL (spec 4.1): update the bank with this batch's DO prototypes, then contrast."""
        cfg = self.config
        q = output.query_features.float()
        s = output.support.features.float()
        b, k = s.shape[:2]
        s = s.flatten(0, 1)
        query_labels = _labels_at(query_mask, tuple(q.shape[-2:]))
        support_labels = _labels_at(support_masks.flatten(0, 1), tuple(s.shape[-2:]))
        # 1. DO prototypes: the query's DO mask uses its ground truth, as the reference does.
        query_do = weighted_gap(q, distracting_mask(output.bg_logits, query_labels)).flatten(1)
        support_do = weighted_gap(s, distracting_mask(output.support_bg_logits.flatten(0, 1), support_labels)).flatten(
            1
        )
        # 2. Anchor: predicted query target; positive: mean of the per-shot ground-truth prototypes.
        predicted = output.head_logits.argmax(dim=1, keepdim=True).to(q.dtype)
        anchors = weighted_gap(q, predicted).flatten(1)
        positives = weighted_gap(s, support_labels).flatten(1).unflatten(0, (b, k)).mean(dim=1)
        # 3. Bank update before the loss (the current DOs are among the negatives), same on every rank.
        new = torch.cat([query_do, support_do]).detach()
        new_classes = torch.cat([classes, classes.repeat_interleave(k)])
        if all_gather is not None:
            new, new_classes = all_gather(new), all_gather(new_classes)
        self.bank.update(new, new_classes)
        negatives = [self.bank.sample(int(c), cfg.pcl_negatives) for c in classes.tolist()]
        return prototype_contrast_loss(anchors, positives, negatives, cfg.pcl_temperature, cfg.pcl_eps)
