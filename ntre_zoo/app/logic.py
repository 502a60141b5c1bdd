"""What the web app does, without Gradio: load models (once each), read the supports' annotations, predict,
draw the results and write the masks to download. :mod:`ntre_zoo.app.ui` wires these to the page."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image

from .._atomic import atomic_write
from ..data.synthetic import synthetic_episode
from ..demo import DEMO_MODEL
from ..inference import Prediction, encode_support, load_image, load_mask, predict
from ..inference.visualize import heatmap, overlay
from ..model.types import FewShotSegmenter
from ..zoo.hub import from_pretrained
from ..zoo.manifest import load_manifest

__all__ = [
    "AnnotatedSupport",
    "LoadedModel",
    "ModelCache",
    "describe_support",
    "editor_support",
    "editor_value",
    "model_notice",
    "new_support_image",
    "read_query",
    "result_panels",
    "run_prediction",
    "status_line",
    "write_examples",
    "write_masks",
    "zoo_choices",
]


@dataclass(frozen=True)
class LoadedModel:
    """A model the app can run, with what it was trained on (``synthetic``, ``pascal5i``, ...; None if unknown)."""

    name: str
    model: FewShotSegmenter
    trained_on: str | None

    @property
    def synthetic(self) -> bool:
        return self.trained_on == "synthetic"


def zoo_choices() -> list[str]:
    """The manifest's published names (those whose weights can be loaded), the shipped demo model first."""
    names = load_manifest().names(published_only=True)
    return sorted(names, key=lambda name: (name != DEMO_MODEL, name))


def _trained_on(name: str) -> str | None:
    """The dataset a zoo name or a saved model directory was trained on, from the manifest or its config.json."""
    manifest = load_manifest()
    if name in manifest.entries:
        return manifest.entries[name].dataset
    config = Path(name) / "config.json"
    if config.is_file():
        dataset = json.loads(config.read_text(encoding="utf-8")).get("metadata", {}).get("dataset")
        return str(dataset) if dataset else None
    return None


class ModelCache:
    """Models by name, each loaded once (``from_pretrained``); one app holds one cache.

    Args:
        initial: the model shown first: a name or directory for ``from_pretrained``, or a model object (then
            named ``label``).
        label: the name a model object is listed under.
    """

    def __init__(self, initial: FewShotSegmenter | str | Path = DEMO_MODEL, label: str = "custom model") -> None:
        self._models: dict[str, LoadedModel] = {}
        if isinstance(initial, (str, Path)):
            self.default = str(initial)
        else:
            self.default = label
            self._models[label] = LoadedModel(label, initial, None)

    def get(self, name: str | None) -> LoadedModel:
        """The model called ``name`` (the default when empty), loading it on first use.

        Raises:
            ValueError, FileNotFoundError, KeyError, RuntimeError: what ``from_pretrained`` raises.
        """
        name = (name or "").strip() or self.default
        if name not in self._models:
            self._models[name] = LoadedModel(name, from_pretrained(name), _trained_on(name))
        return self._models[name]


def model_notice(loaded: LoadedModel) -> str:
    """The page's line about the model (Markdown); plain about the synthetic demo model."""
    if loaded.synthetic:
        return (
            f"**Synthetic demo model.** `{loaded.name}` was trained on drawn shapes on textured backgrounds "
            "(ntre-zoo's synthetic benchmark), **not on photos**: it segments shapes like those of the examples "
            "below and does poorly on real pictures. Load real weights with `ntre-zoo app --model NAME_OR_DIR`."
        )
    trained = f", trained on {loaded.trained_on}" if loaded.trained_on else ""
    return f"Model: `{loaded.name}`{trained}."


@dataclass(frozen=True)
class AnnotatedSupport:
    """One support image ``(H, W, 3)`` uint8 and its mask ``(H, W)`` uint8 in {0, 1}."""

    image: np.ndarray
    mask: np.ndarray


def editor_support(image: Any, editor: dict[str, Any] | None, mask_upload: Any, index: int) -> AnnotatedSupport | None:
    """A support slot's image and its mask: the uploaded mask when there is one, else the brush strokes painted
    over the image in the editor. None when the slot holds no image.

    Args:
        image: the support image ``(H, W, 3)`` uint8 (or anything ``predict`` takes), or None.
        editor: ``{"background": ..., "layers": [(H, W, 4), ...], ...}`` as Gradio's ImageEditor gives it, or
            None; a stroke is any pixel of a layer with alpha > 0.
        mask_upload: an uploaded mask (anything ``predict`` takes as a mask) or None.
        index: the slot's 0-based number, for messages.

    Raises:
        ValueError: no mask (nothing painted, nothing uploaded), a mask of another size than the image, or
            strokes drawn on a canvas of another size (painted before the image was on it).
    """
    if image is None:
        if mask_upload is not None:
            raise ValueError(f"Support {index + 1} has a mask but no image: add the image.")
        return None
    array = (load_image(image, f"support {index + 1}").permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    h, w = array.shape[:2]
    if mask_upload is not None:
        mask = (load_mask(mask_upload, f"support {index + 1} mask") == 1).numpy()
        if mask.shape != (h, w):
            raise ValueError(
                f"Support {index + 1}: the mask is {mask.shape[0]}x{mask.shape[1]} but the image is {h}x{w}; "
                "upload a mask of the image's size."
            )
    else:
        mask = np.zeros((h, w), dtype=bool)
        for layer in [np.asarray(layer) for layer in (editor or {}).get("layers") or []]:
            if layer.ndim != 3 or layer.shape[2] != 4 or not (layer[..., 3] > 0).any():
                continue
            if layer.shape[:2] != (h, w):
                raise ValueError(
                    f"Support {index + 1}: the strokes were drawn on a {layer.shape[0]}x{layer.shape[1]} canvas, "
                    f"not on the {h}x{w} image (painted before it appeared?); clear them and paint again."
                )
            mask |= layer[..., 3] > 0
    if not mask.any():
        raise ValueError(
            f"Support {index + 1} has no target pixel: paint the object with the brush or upload its mask."
        )
    return AnnotatedSupport(array, mask.astype(np.uint8))


def editor_value(image: np.ndarray | None) -> dict[str, Any] | None:
    """The painting editor's value for a new support image: the image as background, no strokes."""
    return None if image is None else {"background": image, "layers": [], "composite": image}


def new_support_image(image: np.ndarray | None, mask_upload: Any, index: int) -> tuple[dict[str, Any] | None, str]:
    """A support image was added, changed or removed: the painting editor's new value and the slot's line."""
    value = editor_value(image)
    return value, describe_support(image, value, mask_upload, index)


def describe_support(image: Any, editor: dict[str, Any] | None, mask_upload: Any, index: int) -> str:
    """One line about a support slot as it stands: its size and its mask, or what it still lacks."""
    try:
        support = editor_support(image, editor, mask_upload, index)
    except (ValueError, TypeError) as error:
        return str(error)
    if support is None:
        return f"Support {index + 1}: empty."
    h, w = support.mask.shape
    source = "uploaded mask" if mask_upload is not None else "painted"
    return f"Support {index + 1}: {h} x {w} px, {int(support.mask.sum())} object pixels ({source})."


def read_query(path: str | Path) -> np.ndarray:
    """A query file as ``(H, W, 3)`` uint8 RGB."""
    return (load_image(path, f"query {Path(path).name}").permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def run_prediction(
    model: FewShotSegmenter, supports: Sequence[AnnotatedSupport], queries: Sequence[np.ndarray]
) -> list[Prediction]:
    """Encode the supports once and segment every query (``model.predict`` with details).

    Raises:
        ValueError: no support or no query, saying what to add.
    """
    if not supports:
        raise ValueError("Add at least one support image and paint (or upload) the object's mask.")
    if not queries:
        raise ValueError("Add at least one query image to segment.")
    support = encode_support(model, [s.image for s in supports], [s.mask for s in supports])
    return cast(list[Prediction], predict(model, support, list(queries), return_details=True))


def result_panels(queries: Sequence[np.ndarray], names: Sequence[str], predictions: Sequence[Prediction]) -> list:
    """Gallery items ``(image, caption)``: per query its overlay, the target probability, the BG and DO maps."""
    items: list[tuple[np.ndarray, str]] = []
    for query, name, prediction in zip(queries, names, predictions, strict=True):
        items += [
            (np.asarray(overlay(query, prediction.mask, legend=False)), f"{name}: prediction"),
            (np.asarray(heatmap(prediction.probability)), f"{name}: target probability"),
            (np.asarray(heatmap(prediction.bg_map)), f"{name}: BG map (mined background)"),
            (np.asarray(heatmap(prediction.do_map)), f"{name}: DO map (eliminated distractors)"),
        ]
    return items


def _write_png(path: Path, array: np.ndarray) -> Path:
    image = Image.fromarray(array)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def write_masks(directory: Path, names: Sequence[str], predictions: Sequence[Prediction]) -> list[Path]:
    """One ``<name>_mask.png`` per query (8-bit, 255 = target, 0 = not) in ``directory``; their paths."""
    paths = []
    for name, prediction in zip(names, predictions, strict=True):
        paths.append(_write_png(directory / f"{Path(name).stem}_mask.png", prediction.mask * np.uint8(255)))
    return paths


def write_examples(directory: Path, seeds: Sequence[int] = (0, 1, 2, 3)) -> list[tuple[Path, Path, Path]]:
    """Synthetic episodes of fold 0's novel classes as PNG files: ``(support, support mask, query)`` per seed."""
    episodes = []
    for seed in seeds:
        supports, masks, query, _ = synthetic_episode(seed, fold=0, shot=1, novel=True)
        files = (
            directory / f"episode{seed}_support.png",
            directory / f"episode{seed}_support_mask.png",
            directory / f"episode{seed}_query.png",
        )
        for path, array in zip(files, (supports[0], masks[0] * np.uint8(255), query), strict=True):
            _write_png(path, array)
        episodes.append(files)
    return episodes


def status_line(loaded: LoadedModel, supports: int, queries: int, seconds: float) -> str:
    """The line under the results."""
    plural = "y" if queries == 1 else "ies"
    return f"{queries} quer{plural} segmented from {supports} support(s) by `{loaded.name}` in {seconds:.2f} s."
