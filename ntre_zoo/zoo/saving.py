"""``save_pretrained``: a model as a directory of ``config.json``, ``model.safetensors`` and a model card.

``config.json`` holds the architecture (:class:`~ntre_zoo.model.config.ModelConfig`), the preprocessing,
the package version and free metadata; the weights are safetensors (no pickle).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch

from .._atomic import atomic_write, atomic_write_text
from .._version import __version__
from ..data.classnames import BENCHMARK_CLASSES, fold_classes
from ..model.types import FewShotSegmenter
from .model_card import render_model_card

__all__ = ["ARCHITECTURE", "CONFIG_NAME", "MODEL_CARD_NAME", "WEIGHTS_NAME", "build_config", "save_pretrained"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
ARCHITECTURE = "ntrenet"
PathLike = str | os.PathLike[str]


def _full_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    meta = dict(metadata or {})
    dataset, fold = meta.get("dataset"), meta.get("fold")
    if dataset in BENCHMARK_CLASSES and fold in (0, 1, 2, 3):
        train, test = fold_classes(dataset, fold)
        meta.setdefault("train_classes", train)
        meta.setdefault("test_classes", test)
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"metadata must be JSON-serialisable (str, numbers, lists, dicts): {error}. "
            "Convert tensors with .item()/.tolist()."
        ) from error
    return meta


def build_config(model: FewShotSegmenter, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` dict of ``model``."""
    cfg = model.config
    return {
        "architecture": ARCHITECTURE,
        "model_config": cfg.to_dict(),
        "preprocessing": {
            "test_size": cfg.test_size,
            "mean": list(cfg.mean),
            "std": list(cfg.std),
            "input": "RGB in [0, 1]",
        },
        "ntre_zoo_version": __version__,
        "metadata": _full_metadata(metadata),
    }


def save_pretrained(
    model: FewShotSegmenter, save_directory: PathLike, *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card to ``save_directory``.

    Each file is written to a temporary file in the same directory and moved into place, so an interrupted
    save leaves the previous files intact and no partial ``model.safetensors``.

    Args:
        model: the model to save.
        save_directory: created if needed.
        metadata: JSON-serialisable facts about the weights, e.g. ``dataset``, ``fold``, ``metrics``
            (``train_classes``/``test_classes`` are filled in for PASCAL-5i and COCO-20i folds).

    Returns:
        The directory.

    Raises:
        TypeError: metadata that is not JSON-serialisable.
    """
    directory = Path(save_directory)
    config = build_config(model, metadata)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(
        directory / WEIGHTS_NAME,
        lambda tmp: safetensors.torch.save_file(state, tmp, metadata={"format": "pt", "ntre_zoo_version": __version__}),
    )
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    atomic_write_text(
        directory / MODEL_CARD_NAME, render_model_card(config, repo_id=config["metadata"].get("repo_id", ""))
    )
    return directory
