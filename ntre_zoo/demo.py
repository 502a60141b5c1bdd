"""The offline demo: one synthetic episode, predicted and drawn as a PNG (support, query, prediction,
BG map, DO map side by side, by :func:`ntre_zoo.inference.visualize.save_panel`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.synthetic import synthetic_episode
from .inference.visualize import save_panel
from .model import NTRENet
from .zoo.hub import from_pretrained

__all__ = ["DEMO_MODEL", "DemoResult", "run_demo"]

#: The trained model shipped inside the package for this demo.
DEMO_MODEL = "ntrenet_tiny.synthetic_fold0"


@dataclass
class DemoResult:
    """What the demo did: where the picture is, which model ran, and the episode's target IoU."""

    output: Path
    model_name: str
    iou: float


def run_demo(
    output: str | Path = "ntre_zoo_demo.png", *, seed: int = 0, shot: int = 1, model: NTRENet | None = None
) -> DemoResult:
    """Build a synthetic episode of fold 0's novel classes, predict it and write the PNG.

    Args:
        output: PNG path to write (its folder must exist).
        seed: picks the episode.
        shot: number of supports.
        model: a model to use instead of the shipped demo model.
    """
    output = Path(output)
    if not output.parent.is_dir():
        raise FileNotFoundError(f"Cannot write {str(output)!r}: folder {str(output.parent)!r} does not exist.")
    if model is None:
        model, name = from_pretrained(DEMO_MODEL), DEMO_MODEL
    else:
        name = type(model).__name__
    supports, masks, query, query_mask = synthetic_episode(seed, fold=0, shot=shot, novel=True)
    prediction = model.predict(supports, masks, query, return_details=True)
    inter = np.logical_and(prediction.mask == 1, query_mask == 1).sum()
    union = np.logical_or(prediction.mask == 1, query_mask == 1).sum()
    iou = float(inter / union) if union else 1.0
    title = f"{name} | synthetic fold 0, novel class, seed {seed} | {shot}-shot | IoU {iou:.3f}"
    save_panel(output, query, prediction, (supports, masks), title=title, tile=query.shape[0])  # unscaled
    return DemoResult(output, name, iou)
