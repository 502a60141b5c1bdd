"""The evaluation loop: ``evaluate`` a model on a fold's episodes, once or over several seeds."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..data.episodes import EpisodeDataset, collate_episodes
from ..data.preprocessing import logits_to_original
from ..model.config import check_amp_dtype, check_int, resolve_device
from .feature_reuse import score_grouped
from .metrics import FewShotMeter, FoldResult, MultiSeedResult, episode_stats

__all__ = ["evaluate", "evaluate_seeds", "score_episodes"]


def _with(dataset: EpisodeDataset, episodes: int | None, seed: int | None) -> EpisodeDataset:
    if dataset.split != "val":
        raise ValueError(f"evaluate needs an evaluation dataset (split='val'), got split={dataset.split!r}.")
    if episodes is None and seed is None:
        return dataset
    out = copy.copy(dataset)
    if episodes is not None:
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes!r}.")
        out.episodes = int(episodes)
    if seed is not None:
        out.seed = int(seed)
    return out


def score_episodes(
    model: torch.nn.Module,
    dataset: EpisodeDataset,
    indices: Iterable[int],
    meter: FewShotMeter,
    *,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = True,
    reuse_features: bool = True,
    cache_mb: float = 2048,
) -> None:
    """Score episodes ``indices`` of ``dataset`` into ``meter``; the model must be in eval mode, on its device,
    under ``torch.inference_mode``.

    With ``reuse_features`` (and an :class:`EpisodeDataset`, whose episodes can be listed without loading
    them) the episodes are grouped by query image and one-shot support encodings are cached
    (:mod:`ntre_zoo.evaluation.feature_reuse`); otherwise every episode runs on its own (the baseline path). Both
    give the same counts.
    """
    device = next(model.parameters()).device
    if reuse_features and isinstance(dataset, EpisodeDataset):
        score_grouped(
            model,
            dataset,
            indices,
            meter,
            batch_size=batch_size,
            workers=workers,
            device=device,
            progress=progress,
            cache_bytes=int(cache_mb * 2**20),
        )
        return
    subset = Subset(dataset, list(indices))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_episodes)
    for batch in tqdm(loader, desc="evaluate", disable=not progress, unit="batch"):
        logits = model(
            batch["query_image"].to(device), batch["support_images"].to(device), batch["support_masks"].to(device)
        ).logits.float()
        for b, label in enumerate(batch["query_label"]):
            h, w = label.shape
            prediction = logits_to_original(logits[b : b + 1], h, w).argmax(dim=1)[0]
            meter.update(int(batch["class_id"][b]), episode_stats(prediction, label.to(device, non_blocking=True)))


def evaluate(
    model: torch.nn.Module,
    dataset: EpisodeDataset,
    *,
    episodes: int | None = None,
    batch_size: int = 1,
    workers: int = 0,
    device: Any = "cpu",
    seed: int | None = None,
    progress: bool = True,
    reuse_features: bool = True,
    cache_mb: float = 2048,
    amp_dtype: torch.dtype | None = None,
) -> FoldResult:
    """Run ``model`` on the episodes of ``dataset`` and score them (spec section 8).

    The numbers do not depend on ``batch_size``, ``workers`` or ``reuse_features``: episodes are a
    function of the seed and their index, and every episode is scored on its own label.

    Args:
        model: an NTRENet.
        dataset: an evaluation :class:`~ntre_zoo.data.EpisodeDataset` (``split='val'``).
        episodes: number of episodes (default: the dataset's).
        batch_size: episodes per forward pass.
        workers: DataLoader worker processes.
        device: where to run the model.
        seed: the episode seed (default: the dataset's).
        progress: show a progress bar.
        reuse_features: encode each query image once per evaluation and each (support image, class) pair
            once while ``cache_mb`` allows (the fast path); False runs every episode from scratch.
        cache_mb: memory budget of the support cache.
        amp_dtype: run under autocast with this dtype (``torch.bfloat16``, or ``torch.float16`` on CUDA).

    Returns:
        :class:`FoldResult`.
    """
    batch_size, workers = check_int(batch_size, "batch_size", 1), check_int(workers, "workers", 0)
    amp_dtype = check_amp_dtype(amp_dtype)
    device = resolve_device(device) or torch.device("cpu")
    dataset = _with(dataset, episodes, seed)
    meter = FewShotMeter(dataset.classes, {c: dataset.class_name(c) for c in dataset.classes})
    was_training = model.training
    model.eval()
    model.to(device)
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            score_episodes(
                model,
                dataset,
                range(len(dataset)),
                meter,
                batch_size=batch_size,
                workers=workers,
                progress=progress,
                reuse_features=reuse_features,
                cache_mb=cache_mb,
            )
    finally:
        model.train(was_training)
    return meter.result(seed=dataset.seed)


def evaluate_seeds(
    model: torch.nn.Module, dataset: EpisodeDataset, seeds: Sequence[int], **kwargs: Any
) -> MultiSeedResult:
    """:func:`evaluate` once per seed (same other settings); returns their mean and spread."""
    if not seeds:
        raise ValueError("Pass at least one seed.")
    return MultiSeedResult([evaluate(model, dataset, seed=int(s), **kwargs) for s in seeds])
