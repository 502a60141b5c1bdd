"""Validation during training: the evaluation protocol of :mod:`ntre_zoo.evaluation`, sharded over ranks.

Rank r scores episodes r, r + W, r + 2W, ...; the per-class counts of :class:`~ntre_zoo.evaluation.FewShotMeter`
are integers, so their ``all_reduce`` gives exactly the numbers one process would compute.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from ..data.episodes import EpisodeDataset
from ..evaluation import FewShotMeter, score_episodes, with_episodes
from .config import TrainConfig
from .distributed import DistributedContext

__all__ = ["evaluate_sharded", "make_evaluate_fn"]


def evaluate_sharded(
    model: nn.Module,
    dataset: EpisodeDataset,
    *,
    episodes: int | None = None,
    seed: int | None = None,
    workers: int = 0,
    progress: bool = False,
    distributed: DistributedContext | None = None,
) -> dict[str, float]:
    """Evaluate ``model`` as :func:`ntre_zoo.evaluation.evaluate` does, each rank on its share of episodes.

    Args:
        model: the (unwrapped) network, on its device.
        dataset: an evaluation episode dataset (``split='val'``, items with ``query_label`` and ``class_id``).
        episodes: number of episodes (default: the dataset's).
        seed: the episode seed (default: the dataset's).
        workers: DataLoader workers.
        progress: show a bar on rank 0.
        distributed: the process group view (default: the current one).

    Returns:
        ``{"miou", "fb_iou", "precision", "episodes"}``, identical on every rank.
    """
    ctx = distributed or DistributedContext.current()
    dataset = with_episodes(dataset, episodes, seed)
    meter = FewShotMeter(dataset.classes)
    with torch.inference_mode():
        score_episodes(
            model,
            dataset,
            range(ctx.rank, len(dataset), ctx.world_size),
            meter,
            workers=workers,
            progress=progress and ctx.is_main,
        )
    if ctx.enabled:
        counts = meter.counts.to(next(model.parameters()).device)
        dist.all_reduce(counts)
        meter.counts = counts.cpu()
    result = meter.result()
    return {
        "miou": result.miou,
        "fb_iou": result.fb_iou,
        "precision": result.precision,
        "episodes": int(result.episodes),
    }


def make_evaluate_fn(
    dataset: EpisodeDataset, config: TrainConfig, workers: int = 0
) -> Callable[[nn.Module], dict[str, float]]:
    """The trainer's validation callback: ``config.val_episodes`` episodes under ``config.val_seed``."""

    def evaluate_fn(model: nn.Module) -> dict[str, float]:
        return evaluate_sharded(
            model,
            dataset,
            episodes=config.val_episodes,
            seed=config.val_seed,
            workers=workers,
            progress=config.progress,
        )

    return evaluate_fn
