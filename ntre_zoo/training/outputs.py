"""Files a training run writes besides checkpoints: JSON records, model-card metadata, TensorBoard."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_json
from .config import TrainConfig

__all__ = [
    "append_jsonl",
    "card_metadata",
    "epoch_line",
    "tensorboard_writer",
    "write_json",
]


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    atomic_write_json(path, payload, default=str)


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line."""
    with open(path, "a") as handle:
        handle.write(json.dumps(dict(record)) + "\n")


def epoch_line(record: Mapping[str, Any], epochs: int, best: bool = False) -> str:
    """The line printed after each epoch: mean loss, lr and the validation metrics in percent (as ``evaluate``
    prints them), e.g. ``epoch 3/30  step 330  loss 0.2710  lr 2.31e-02  val mIoU 41.20  FB-IoU 63.05 (best)``."""
    words = [f"epoch {record['epoch']}/{epochs}", f"step {record['step']}"]
    if "train_total" in record:
        words.append(f"loss {record['train_total']:.4f}")
    words.append(f"lr {record['lr']:.3g}")
    if "val_miou" in record:
        words.append(f"val mIoU {100 * record['val_miou']:.2f}")
    if "val_fb_iou" in record:
        words.append(f"FB-IoU {100 * record['val_fb_iou']:.2f}" + (" (best)" if best else ""))
    return "  ".join(words)


def card_metadata(
    metadata: Mapping[str, Any],
    metrics: Mapping[str, Any],
    config: TrainConfig,
    epoch: int,
    step: int,
    world_size: int,
    environment: Mapping[str, Any] | None = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """The ``save_pretrained`` metadata of exported weights: the run's metadata, the validation metrics with
    the ``episodes``/``seed``/``command`` that ``push_to_hub`` needs to record them as measured, the recipe (with
    the ``precision`` it computed in, ``TrainConfig.precision_on``), and the machine it ran on
    (:func:`~ntre_zoo.training.environment.run_environment`)."""
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
            "precision": precision,
            **({"environment": dict(environment)} if environment is not None else {}),
        },
    }


def tensorboard_writer(log_dir: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` when the optional ``tensorboard`` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))
