"""Pictures of results, one call away (``ntre_zoo.visualize``).

* :func:`overlay` draws a mask or label map on its image: coloured, semi-transparent, outlined, with a legend
  for named classes.
* :func:`panel` / :func:`save_panel` put the supports with their annotations drawn, the query, the
  prediction, the BG map and the DO map(s) side by side, wrapping into rows beyond ``max_width``.
* :func:`label_image` turns a mask or label map into a palette PNG image (pixel values stay 0/1 or the
  label indices; viewers show the colours), :func:`heatmap` a [0, 1] map into colours.

Class ``i`` (label ``i``) is drawn in ``PALETTE[(i - 1) % len(PALETTE)]`` everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .._atomic import atomic_write
from .annotations import Points, Scribble, dilate_disc, support_mask
from .image_io import as_list, load_image, load_mask
from .predict import Prediction
from .segment import Segmentation

__all__ = ["PALETTE", "colour", "heatmap", "label_image", "overlay", "panel", "save_panel"]

#: Twenty distinct colours (Sasha Trubetskoy's list); label ``i`` uses entry ``(i - 1) % 20``.
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
    (255, 225, 25),
)


def colour(label: int) -> tuple[int, int, int]:
    """The RGB colour of label ``label`` (>= 1)."""
    return PALETTE[(label - 1) % len(PALETTE)]


def _rgb(image: Any, name: str = "image") -> np.ndarray:
    """Any image form ``predict`` takes -> ``uint8 (H, W, 3)``."""
    return (load_image(image, name) * 255).round().byte().permute(1, 2, 0).numpy()


def _labels(value: Any, name: str = "labels") -> np.ndarray:
    """A mask, label map, :class:`Prediction` or :class:`Segmentation` -> ``int64 (H, W)`` labels."""
    if isinstance(value, Prediction):
        value = value.mask
    elif isinstance(value, Segmentation):
        value = value.label_map
    if isinstance(value, Image.Image):
        value = np.asarray(value)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray) or value.ndim != 2:
        raise ValueError(
            f"{name} must be an (H, W) mask or label map (numpy, tensor, PIL), a Prediction or a Segmentation, "
            f"got {type(value).__name__}{'' if not hasattr(value, 'shape') else f' of shape {value.shape}'}."
        )
    if value.dtype.kind == "f" and not np.array_equal(value, np.round(value)):
        raise ValueError(f"{name} holds fractional values; pass a mask or label map of whole numbers.")
    return value.astype(np.int64)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _outline(region: np.ndarray, width: int) -> np.ndarray:
    """The pixels of ``region`` (bool) that touch a pixel outside it, thickened to ``width``."""
    padded = np.pad(region, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge = region & ~inner
    return dilate_disc(edge, width - 1) & region if width > 1 else edge


def overlay(
    image: Any,
    labels: Any,
    *,
    classes: Sequence[str] | None = None,
    alpha: float = 0.5,
    outline: bool = True,
    legend: bool = True,
) -> Image.Image:
    """Draw a mask or label map on its image.

    Args:
        image: any form ``predict`` takes (path, PIL, numpy, tensor).
        labels: ``(H, W)`` at the image's size: a 0/1 mask or a label map (0 = background, ``i`` = class i),
            or a :class:`Prediction` / :class:`Segmentation` (whose class names are then used).
        classes: names of labels 1, 2, ... for the legend.
        alpha: opacity of the fill in [0, 1].
        outline: draw each region's border in its full colour.
        legend: list the named classes present in ``classes`` at the top left.

    Returns:
        An RGB ``PIL.Image`` of the image's size.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}.")
    if classes is None and isinstance(labels, Segmentation):
        classes = labels.classes
    rgb = _rgb(image)
    label_map = _labels(labels)
    if label_map.shape != rgb.shape[:2]:
        raise ValueError(
            f"labels are {label_map.shape[0]}x{label_map.shape[1]} but the image is {rgb.shape[0]}x{rgb.shape[1]} "
            "(H x W); pass the mask of this image."
        )
    out = rgb.astype(np.float32)
    width = max(1, round(max(rgb.shape[:2]) / 300))
    for label in (int(v) for v in np.unique(label_map) if 0 < v < 256):
        region = label_map == label
        out[region] = (1 - alpha) * out[region] + alpha * np.array(colour(label), np.float32)
        if outline:
            out[_outline(region, width)] = colour(label)
    picture = Image.fromarray(out.round().astype(np.uint8))
    if legend and classes:
        _legend(picture, list(classes))
    return picture


def _legend(picture: Image.Image, classes: list[str]) -> None:
    size = max(10, min(picture.size) // 20)
    font = _font(size)
    draw = ImageDraw.Draw(picture, "RGBA")
    line = size + 4
    text_width = max(draw.textlength(name, font=font) for name in classes)
    draw.rectangle((2, 2, 8 + line + text_width, 6 + line * len(classes)), fill=(255, 255, 255, 190))
    for i, name in enumerate(classes):
        y = 5 + i * line
        draw.rectangle((5, y, 5 + size, y + size), fill=colour(i + 1), outline=(0, 0, 0))
        draw.text((9 + size, y - 1), name, fill=(0, 0, 0), font=font)


def heatmap(values: Any) -> Image.Image:
    """A ``(H, W)`` map in [0, 1] (BG, DO, probability) as a dark-blue (0) to yellow (1) RGB image."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    if v.ndim != 3:
        raise ValueError(f"values must be an (H, W) map, got shape {v.shape[:-1]}.")
    low, high = np.array([30, 30, 120], np.float32), np.array([250, 220, 40], np.float32)
    return Image.fromarray((low + v * (high - low)).round().astype(np.uint8))


def label_image(labels: Any) -> Image.Image:
    """A mask or label map as a palette (mode ``P``) image: pixel values are the labels (0/1 or class
    indices), shown black for 0 and in :data:`PALETTE` colours for the classes."""
    label_map = _labels(labels)
    if label_map.min(initial=0) < 0 or label_map.max(initial=0) > 255:
        raise ValueError("labels must be in [0, 255] to be stored in a palette image.")
    picture = Image.fromarray(label_map.astype(np.uint8), mode="P")
    picture.putpalette([0, 0, 0] + [c for i in range(1, 256) for c in colour(i)])
    return picture


def _draw_support(image: Any, annotation: Any, label: int, name: str, canvas: int | None) -> Image.Image:
    """A support image with its annotation: the support mask the rule derives, filled and outlined, and
    for clicks and scribbles what was drawn (click centres, raw strokes) on top."""
    rgb = _rgb(image, name)
    mask = support_mask(annotation, rgb.shape[:2], name, canvas=canvas).numpy() == 1
    picture = overlay(rgb, mask.astype(np.uint8) * label, alpha=0.45, legend=False)
    if isinstance(annotation, Points):
        draw = ImageDraw.Draw(picture)
        r = max(2, round(max(rgb.shape[:2]) / 150))
        for x, y in annotation.points:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 255), outline=(0, 0, 0))
    elif isinstance(annotation, Scribble):
        strokes = load_mask(annotation.strokes, name).numpy() == 1
        array = np.asarray(picture).copy()
        array[strokes] = (255, 255, 255)
        picture = Image.fromarray(array)
    return picture


def _support_tiles(supports: Any, classes: Sequence[str], canvas: int | None) -> list[tuple[str, Image.Image]]:
    """``(images, annotations)`` for one class, or ``{name: (images, annotations)}``: captioned tiles."""
    groups = supports.items() if isinstance(supports, Mapping) else [(None, supports)]
    tiles = []
    for index, (name, value) in enumerate(groups):
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(
                f"supports{'' if name is None else f'[{name!r}]'} must be an (images, annotations) pair to be drawn."
            )
        label = classes.index(name) + 1 if name in classes else index + 1
        for k, (image, annotation) in enumerate(zip(as_list(value[0]), as_list(value[1]), strict=True)):
            caption = f"support {k + 1}" + ("" if name is None else f": {name}")
            tiles.append((caption, _draw_support(image, annotation, label, f"support {k + 1}", canvas)))
    return tiles


def panel(
    query: Any,
    result: Prediction | Segmentation,
    supports: Any = None,
    *,
    title: str | None = None,
    tile: int = 256,
    max_width: int = 1600,
    canvas: int | None = None,
) -> Image.Image:
    """Supports with their annotations, the query, the prediction, the BG map and the DO map(s) in one picture.

    Args:
        query: the query image (any form).
        result: ``predict(..., return_details=True)``'s :class:`Prediction` or ``segment``'s :class:`Segmentation`.
        supports: what was passed as supports, to draw them: ``(images, annotations)`` for ``predict``,
            ``{name: (images, annotations)}`` for ``segment``; None leaves them out.
        title: a line under the tiles.
        tile: height of every tile in pixels (the width follows the query's aspect, within 0.5x-2x); each tile
            has a 22 px caption above it, and tiles sit 8 px apart and from the border.
        max_width: tiles wrap into further rows beyond this width.
        canvas: the model's test size, so that clicks and scribbles are drawn with the radii ``predict`` used.

    Returns:
        An RGB ``PIL.Image``.
    """
    if tile < 16 or max_width < tile:
        raise ValueError(f"tile must be >= 16 and max_width >= tile, got tile={tile!r}, max_width={max_width!r}.")
    classes = result.classes if isinstance(result, Segmentation) else ()
    tiles = [] if supports is None else _support_tiles(supports, classes, canvas)
    query_picture = Image.fromarray(_rgb(query, "query"))
    tiles += [("query", query_picture), ("prediction", overlay(query_picture, result))]
    if isinstance(result, Segmentation):
        tiles.append(("BG map (mined background)", heatmap(result.bg_map)))
        tiles += [(f"DO map: {name}", heatmap(m)) for name, m in zip(result.classes, result.do_maps, strict=True)]
    elif isinstance(result, Prediction):
        tiles += [("BG map (mined background)", heatmap(result.bg_map))]
        tiles += [("DO map (eliminated distractors)", heatmap(result.do_map))]
    else:
        raise TypeError(f"result must be a Prediction or a Segmentation, got {type(result).__name__}.")
    cell_w = round(tile * min(2.0, max(0.5, query_picture.width / query_picture.height)))
    return _grid(tiles, cell_w, tile, max_width, title)


def _grid(
    tiles: list[tuple[str, Image.Image]], cell_w: int, tile: int, max_width: int, title: str | None
) -> Image.Image:
    """Captioned tiles, each fitted into a ``cell_w x tile`` cell, in rows no wider than ``max_width``."""
    pad, header, font = 8, 22, _font(14)  # a 22 px caption row above every tile
    rows = -(-len(tiles) // max(1, (max_width - pad) // (cell_w + pad)))
    columns = -(-len(tiles) // rows)  # balanced rows
    footer = header + pad if title else 0
    canvas = Image.new(
        "RGB", (pad + columns * (cell_w + pad), pad + rows * (header + tile + pad) + footer), (255, 255, 255)
    )
    draw = ImageDraw.Draw(canvas)
    for i, (caption, picture) in enumerate(tiles):
        x, y = pad + (i % columns) * (cell_w + pad), pad + (i // columns) * (header + tile + pad)
        scale = min(cell_w / picture.width, tile / picture.height)
        fitted = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))))
        canvas.paste(fitted, (x, y + header))
        draw.text((x, y + 2), caption, fill=(0, 0, 0), font=font)
    if title:
        draw.text((pad, canvas.height - footer), title, fill=(0, 0, 0), font=font)
    return canvas


def save_panel(
    path: str | Path, query: Any, result: Prediction | Segmentation, supports: Any = None, **kwargs: Any
) -> Path:
    """Write :func:`panel` as a PNG at ``path`` (atomically; parent folders are created). Returns the path."""
    picture = panel(query, result, supports, **kwargs)
    return atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))
