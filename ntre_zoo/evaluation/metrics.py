"""Few-shot segmentation metrics: per-episode counts, their per-class sums and reductions (spec section 8).

Counting and reducing are separate: :func:`episode_stats` is a pure function of one prediction and its
label; :class:`FewShotMeter` sums those counts per class in one int64 tensor (``merge`` or an
``all_reduce`` of :attr:`FewShotMeter.counts` combines ranks) and reduces them to:

* class mIoU: per class, the foreground intersection summed over its episodes divided by the summed
  union, then the mean over the fold's classes (PFENet ``test.py``);
* FB-IoU: background and foreground intersection and union summed over all episodes, mean of the two;
* precision TP / (TP + FP): pooled per class like the IoU, then averaged over classes (NTRENet's helper
  computes it per episode and does not say how it is pooled; pooling like the IoU keeps it comparable).

Scoring is at the original label resolution with 255 ignored, as the reference's ``ori_resize``. All
values are fractions in [0, 1]; tables print percentages.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.preprocessing import IGNORE_INDEX

__all__ = [
    "STAT_FIELDS",
    "FewShotMeter",
    "FoldResult",
    "MultiSeedResult",
    "episode_stats",
    "format_table",
]

#: Columns of :attr:`FewShotMeter.counts`.
STAT_FIELDS = (
    "bg_intersection",
    "bg_union",
    "fg_intersection",
    "fg_union",
    "true_positive",
    "false_positive",
    "episodes",
)
_EPS = 1e-10  # as the reference: IoU = I / (U + 1e-10), so a class never predicted nor present scores 0


def episode_stats(prediction: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Counts of one episode: ``[bg I, bg U, fg I, fg U, TP, FP, 1]`` as an int64 tensor on the inputs'
    device (no host synchronisation).

    Args:
        prediction: ``(H, W)`` binary prediction (0/1).
        target: ``(H, W)`` label in {0, 1, ignore_index}; ignored pixels count nowhere.

    Raises:
        ValueError: the shapes differ.
    """
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction has shape {tuple(prediction.shape)} but the label {tuple(target.shape)}; "
            "score at the label's size."
        )
    valid = target != ignore_index
    pred_fg = (prediction == 1) & valid
    pred_bg = (prediction != 1) & valid
    gt_fg = (target == 1) & valid
    gt_bg = (target != 1) & valid
    tp = (pred_fg & gt_fg).sum()
    counts = [
        (pred_bg & gt_bg).sum(),
        (pred_bg | gt_bg).sum(),
        tp,
        (pred_fg | gt_fg).sum(),
        tp,
        (pred_fg & gt_bg).sum(),
    ]
    return torch.stack([*counts, torch.ones_like(tp)]).long()


@dataclass
class FoldResult:
    """Metrics of one evaluation run.

    Args:
        miou: class mIoU over the classes that had episodes.
        fb_iou: foreground-background IoU.
        precision: class-averaged pooled precision.
        class_iou, class_precision: per class id (None for a class without episodes).
        class_episodes: episodes per class id.
        class_names: display names.
        episodes: total episodes.
        seed: the episode seed.
        protocol: the name of the evaluation protocol (``ntrenet``, ...), or None for a dataset's own settings.
    """

    miou: float
    fb_iou: float
    precision: float
    class_iou: dict[int, float | None]
    class_precision: dict[int, float | None]
    class_episodes: dict[int, int]
    class_names: dict[int, str] = field(default_factory=dict)
    episodes: int = 0
    seed: int | None = None
    protocol: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (class ids become string keys)."""
        return {
            "miou": self.miou,
            "fb_iou": self.fb_iou,
            "precision": self.precision,
            "class_iou": {str(c): v for c, v in self.class_iou.items()},
            "class_precision": {str(c): v for c, v in self.class_precision.items()},
            "class_episodes": {str(c): v for c, v in self.class_episodes.items()},
            "class_names": {str(c): v for c, v in self.class_names.items()},
            "episodes": self.episodes,
            "seed": self.seed,
            "protocol": self.protocol,
        }


class FewShotMeter:
    """Per-class sums of :func:`episode_stats`; mergeable across workers or ranks.

    Args:
        classes: the fold's class ids (the ones averaged over).
        class_names: optional display names.
    """

    def __init__(self, classes: Sequence[int], class_names: Mapping[int, str] | None = None) -> None:
        self.classes = tuple(int(c) for c in classes)
        self.class_names = dict(class_names or {})
        self._row = {c: i for i, c in enumerate(self.classes)}
        self.counts = torch.zeros(len(self.classes), len(STAT_FIELDS), dtype=torch.long)

    def update(self, class_id: int, stats: torch.Tensor) -> None:
        """Add one episode's :func:`episode_stats` to ``class_id``.

        Raises:
            KeyError: ``class_id`` is not one of the meter's classes.
        """
        if int(class_id) not in self._row:
            raise KeyError(f"class {class_id!r} is not one of this meter's classes {list(self.classes)}.")
        if self.counts.device != stats.device:  # count where the stats are made: no sync per episode on a GPU
            self.counts = self.counts.to(stats.device)
        self.counts[self._row[int(class_id)]] += stats

    def merge(self, other: FewShotMeter) -> FewShotMeter:
        """Add another meter's counts (same classes) in place and return self."""
        if other.classes != self.classes:
            raise ValueError(
                f"Cannot merge meters over different classes: {list(self.classes)} vs {list(other.classes)}."
            )
        self.counts = self.counts + other.counts.to(self.counts.device)
        return self

    def result(self, seed: int | None = None, protocol: str | None = None) -> FoldResult:
        """Reduce the counts to :class:`FoldResult` (``seed`` and ``protocol`` are recorded in it)."""
        counts = self.counts.cpu()
        c = counts.double()
        bg_i, bg_u, fg_i, fg_u, tp, fp, n = (c[:, i] for i in range(len(STAT_FIELDS)))
        seen = n > 0
        iou = fg_i / (fg_u + _EPS)
        precision = tp / (tp + fp + _EPS)
        fb = 0.5 * (bg_i.sum() / (bg_u.sum() + _EPS) + fg_i.sum() / (fg_u.sum() + _EPS))

        def per_class(values: torch.Tensor) -> dict[int, float | None]:
            return {cls: (float(v) if s else None) for cls, v, s in zip(self.classes, values, seen, strict=False)}

        mean = lambda values: float(values[seen].mean()) if bool(seen.any()) else 0.0  # noqa: E731
        return FoldResult(
            miou=mean(iou),
            fb_iou=float(fb) if bool(seen.any()) else 0.0,
            precision=mean(precision),
            class_iou=per_class(iou),
            class_precision=per_class(precision),
            class_episodes={cls: int(v) for cls, v in zip(self.classes, counts[:, -1], strict=False)},
            class_names=self.class_names,
            episodes=int(counts[:, -1].sum()),
            seed=seed,
            protocol=protocol,
        )


@dataclass
class MultiSeedResult:
    """Several seeds' :class:`FoldResult` with their mean and (sample) standard deviation."""

    runs: list[FoldResult]

    def _stat(self, key: str, fn: Callable[[list[float]], float]) -> float:
        values = [getattr(r, key) for r in self.runs]
        return float(fn(values)) if len(values) > 1 or fn is statistics.mean else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("miou", "fb_iou", "precision"):
            out[key] = self._stat(key, statistics.mean)
            out[f"{key}_std"] = self._stat(key, statistics.stdev)
        classes = self.runs[0].class_iou
        out["class_iou"] = {
            str(c): statistics.mean(v) if (v := [x for r in self.runs if (x := r.class_iou[c]) is not None]) else None
            for c in classes
        }
        out["class_names"] = {str(c): n for c, n in self.runs[0].class_names.items()}
        out["episodes"] = self.runs[0].episodes
        out["seeds"] = [r.seed for r in self.runs]
        out["protocol"] = self.runs[0].protocol
        out["runs"] = [r.to_dict() for r in self.runs]
        return out


def format_table(result: FoldResult) -> str:
    """A plain-text table of per-class IoU and the summary metrics, in percent."""
    lines = [f"{'class':<24} {'IoU':>7} {'prec.':>7} {'episodes':>9}"]
    for c in result.class_iou:
        name = f"{c} {result.class_names.get(c, '')}".strip()
        iou, prec = result.class_iou[c], result.class_precision[c]
        fmt = lambda v: f"{100 * v:7.2f}" if v is not None else f"{'-':>7}"  # noqa: E731
        lines.append(f"{name[:24]:<24} {fmt(iou)} {fmt(prec)} {result.class_episodes[c]:>9d}")
    lines.append("-" * 50)
    lines.append(f"{'mIoU':<24} {100 * result.miou:7.2f}")
    lines.append(f"{'FB-IoU':<24} {100 * result.fb_iou:7.2f}")
    lines.append(f"{'precision':<24} {100 * result.precision:7.2f}")
    lines.append(f"{'episodes':<24} {result.episodes:7d}   seed {result.seed}")
    return "\n".join(lines)
