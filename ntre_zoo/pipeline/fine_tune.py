"""``fine_tune``: train or fine-tune any NTRENet (a model, a zoo name or a saved directory) on episodes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.episodes import EpisodeDataset
from ..training.config import TrainConfig
from ..training.trainer import EvaluateFn, Trainer, TrainResult
from ..training.validation import make_evaluate_fn
from ..zoo.hub import from_pretrained

__all__ = ["TrainConfig", "TrainResult", "Trainer", "fine_tune"]


def fine_tune(
    model: nn.Module | str | os.PathLike,
    dataset: Dataset,
    *,
    val_dataset: EpisodeDataset | None = None,
    config: TrainConfig | None = None,
    output_dir: str | os.PathLike | None = None,
    resume: bool = False,
    evaluate_fn: EvaluateFn | None = None,
    device: str | torch.device | None = None,
    metadata: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train ``model`` on ``dataset`` with the NTRENet recipe, starting from its current weights.

    Args:
        model: an ``NTRENet``, or anything ``ntre_zoo.from_pretrained`` accepts (a zoo name, a local
            directory written by ``save_pretrained`` or by a training run's ``OUT/best``).
        dataset: training episodes (the ``ntre_zoo.data`` item contract).
        val_dataset: validation episodes; evaluated with ``ntre_zoo.evaluation`` every
            ``config.validation_interval()`` epochs, and the best weights are kept in ``OUT/best``.
        config: hyper-parameters (default: the ``reference`` preset); ``**overrides`` replace fields of it,
            e.g. ``fine_tune(name, data, epochs=5, base_lr=1e-4)``.
        output_dir: where checkpoints and exported weights go (see :mod:`ntre_zoo.training.trainer`).
        resume: continue the run in ``output_dir`` from its last checkpoint.
        evaluate_fn: a custom validation callback ``model -> {metric: value}`` instead of ``val_dataset``.
        device: defaults to CUDA when available.
        metadata: extra model-card fields (dataset, fold, shot ...).

    Returns:
        :class:`~ntre_zoo.training.TrainResult` with the trained model.
    """
    if not isinstance(model, nn.Module):
        model = from_pretrained(model)
    config = (config or TrainConfig()).replace(**overrides) if overrides else (config or TrainConfig())
    if evaluate_fn is None and val_dataset is not None:
        evaluate_fn = make_evaluate_fn(val_dataset, config)
    trainer = Trainer(
        model, dataset, config, output_dir=output_dir, evaluate_fn=evaluate_fn, device=device, metadata=metadata
    )
    return trainer.fit(resume=resume)
