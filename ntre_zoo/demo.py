"""The offline demo: one synthetic episode, predicted and drawn as a PNG (support, query, prediction,
BG map, DO map side by side)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ._atomic import atomic_write
from .data.synthetic import synthetic_episode
from .inference.predict import Prediction
from .model import NTRENet
from .zoo.hub import from_pretrained

__all__ = ["DEMO_MODEL", "DemoResult", "render_episode", "run_demo"]

#: The trained model shipped inside the package for this demo.
DEMO_MODEL = "ntrenet_tiny.synthetic_fold0"


@dataclass
class DemoResult:
    """What the demo did: where the picture is, which model ran, and the episode's target IoU."""

    output: Path
    model_name: str
    iou: float


def _overlay(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = image.astype(np.float32)
    out[mask.astype(bool)] = 0.45 * out[mask.astype(bool)] + 0.55 * np.array(colour, np.float32)
    return out.astype(np.uint8)


def _heat(values: np.ndarray) -> np.ndarray:
    """[0, 1] map -> a blue-to-yellow RGB image."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    low, high = np.array([30, 30, 120], np.float32), np.array([250, 220, 40], np.float32)
    return (low + v * (high - low)).astype(np.uint8)


def render_episode(
    support_images: list[np.ndarray],
    support_masks: list[np.ndarray],
    query: np.ndarray,
    prediction: Prediction,
    title: str,
) -> Image.Image:
    """Side-by-side panels: supports with their masks, query, prediction, BG map, DO map."""
    panels = [
        (f"support {i + 1}", _overlay(im, m, (220, 40, 40)))
        for i, (im, m) in enumerate(zip(support_images, support_masks, strict=False))
    ]
    panels += [
        ("query", query),
        ("prediction", _overlay(query, prediction.mask, (40, 200, 60))),
        ("BG map (mined background)", _heat(prediction.bg_map)),
        ("DO map (eliminated distractors)", _heat(prediction.do_map)),
    ]
    h, w = query.shape[:2]
    pad, header, footer = 8, 22, 26
    canvas = Image.new("RGB", (pad + len(panels) * (w + pad), header + h + footer + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (name, array) in enumerate(panels):
        x = pad + i * (w + pad)
        canvas.paste(Image.fromarray(array).resize((w, h)), (x, header))
        draw.text((x, 5), name, fill=(0, 0, 0))
    draw.text((pad, header + h + 8), title, fill=(0, 0, 0))
    return canvas


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
    image = render_episode(supports, masks, query, prediction, title)
    atomic_write(output, lambda tmp: image.save(tmp, format="PNG"))
    return DemoResult(output, name, iou)
