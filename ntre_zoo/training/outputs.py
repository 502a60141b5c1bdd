"""Files a training run writes besides checkpoints: JSON records, model-card metadata, TensorBoard."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_json
from .config import TrainConfig

__all__ = ["append_jsonl", "card_metadata", "tensorboard_writer", "write_json"]


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    atomic_write_json(path, payload, default=str)


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line."""
    with open(path, "a") as handle:
        handle.write(json.dumps(dict(record)) + "\n")


def card_metadata(
    metadata: Mapping[str, Any], metrics: Mapping[str, Any], config: TrainConfig, epoch: int, step: int, world_size: int
) -> dict[str, Any]:
    """The ``save_pretrained`` metadata of exported weights: the run's metadata, the validation metrics with
    the ``episodes``/``seed``/``command`` that ``push_to_hub`` needs to record them as measured, and the recipe."""
    measured = dict(metrics)
    if measured:
        measured.setdefault("episodes", config.val_episodes)
        measured.setdefault("seed", config.val_seed)
        if "command" in metadata:
            measured.setdefault("command", metadata["command"])
    return {
        **metadata,
        "metrics": measured,
        "training": {
            "preset": config.preset,
            "epochs_done": epoch,
            "steps": step,
            "base_lr": config.base_lr,
            "batch_size": config.batch_size,
            "seed": config.seed,
            "world_size": world_size,
        },
    }


def tensorboard_writer(log_dir: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` when the optional ``tensorboard`` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))
