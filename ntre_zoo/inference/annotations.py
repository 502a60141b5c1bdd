"""Weak support annotations: a box, clicked points or a scribble wherever a support mask is accepted.

Each becomes the support mask by one fixed rule, at the support image's ``H x W`` (coordinates are pixels of
that image, x to the right, y down, floats allowed):

* :class:`Box` ``(x0, y0, x1, y1)``: the filled rectangle ``x0 <= x < x1``, ``y0 <= y < y1`` is the target,
  the rest background (PANet's box supports). ``x0, y0`` are floored and ``x1, y1`` rounded up.
* :class:`Points`: a disc of ``radius`` pixels around each positive click, by default
  ``round(0.03 * max(H, W))`` (at least 1): the model sees the image with its long side at the canvas size,
  so a click covers the same share of the canvas (about 14 px, 1.8 feature cells, at 473) whatever the photo.
* :class:`Scribble`: the strokes (a mask) dilated by a disc of ``radius`` pixels, by default
  ``round(0.015 * max(H, W))``, so that a thin stroke survives the canvas resize and the stride-8 features.

When the model's canvas is known (``predict``, ``encode_support`` and ``segment`` pass ``canvas=test_size``),
a default radius is also at least :data:`MIN_CANVAS_RADIUS` canvas pixels: the support mask reaches the
features by sampling the canvas every 8 pixels, and a disc of radius 6 (a band of half-width 6) holds such
a sample wherever it lies, so a click or stroke is never lost on a small canvas (129 px for the shipped model).

Negative clicks are not offered: NTRENet reads only the target pixels of a support (everything else,
ignore included, counts as "not target"), so a negative click could change nothing.

:func:`annotation_from_mask` is the seeded rule that derives each kind from a ground-truth mask, which the
cost table in ``docs/predict.md`` uses (``examples/weak_supports.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .image_io import MAX_PIXELS, load_mask

__all__ = [
    "ANNOTATION_KINDS",
    "MIN_CANVAS_RADIUS",
    "POINT_RADIUS",
    "SCRIBBLE_RADIUS",
    "Box",
    "Points",
    "Scribble",
    "annotation_from_mask",
    "components",
    "default_radius",
    "dilate_disc",
    "support_mask",
]

#: Default disc radius of a click, as a fraction of the image's long side.
POINT_RADIUS = 0.03
#: Default dilation radius of a scribble, as a fraction of the image's long side.
SCRIBBLE_RADIUS = 0.015
#: Least default radius in pixels of the model's canvas (more than 8 / sqrt(2), half a stride-8 cell's diagonal).
MIN_CANVAS_RADIUS = 6
#: The weak kinds :func:`annotation_from_mask` derives.
ANNOTATION_KINDS = ("box", "scribble", "points")


def default_radius(fraction: float, size: Sequence[int], canvas: int | None = None) -> int:
    """``round(fraction * max(H, W))``, at least 1 pixel, and with the model's ``canvas`` side at least
    :data:`MIN_CANVAS_RADIUS` canvas pixels (``ceil(6 * max(H, W) / canvas)`` image pixels)."""
    radius = max(1, round(fraction * max(size)))
    return radius if canvas is None else max(radius, math.ceil(MIN_CANVAS_RADIUS * max(size) / canvas))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a number, got {value!r}.")
    if not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"{what} must be a finite pixel coordinate >= 0, got {value!r}.")
    return float(value)


def _radius(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what} must be None (the default rule) or a whole number of pixels >= 0, got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class Box:
    """A box around the target: ``x0 <= x < x1`` and ``y0 <= y < y1`` in pixels of the support image.

    Raises:
        ValueError: a negative or non-finite coordinate, or an empty box (``x1 <= x0`` or ``y1 <= y0``).
    """

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = (_number(getattr(self, k), f"Box.{k}") for k in ("x0", "y0", "x1", "y1"))
        if x1 <= x0 or y1 <= y0:
            raise ValueError(
                f"{self} is empty: it needs x0 < x1 and y0 < y1 (x1, y1 are the right and bottom edges, "
                "exclusive, as in PIL's crop box)."
            )

    def to_mask(self, size: Sequence[int], name: str = "box", canvas: int | None = None) -> np.ndarray:
        """The filled rectangle as a ``uint8 (H, W)`` mask in {0, 1} for an image of ``size = (H, W)``.

        Raises:
            ValueError: the box reaches outside the image.
        """
        h, w = size
        if self.x1 > w or self.y1 > h:
            raise ValueError(
                f"{name}: {self} reaches outside the {h}x{w} (H x W) image; coordinates are pixels of the "
                f"support image with 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}."
            )
        mask = np.zeros((h, w), np.uint8)
        mask[math.floor(self.y0) : math.ceil(self.y1), math.floor(self.x0) : math.ceil(self.x1)] = 1
        return mask


@dataclass(frozen=True)
class Points:
    """Positive clicks on the target, ``[(x, y), ...]`` in pixels of the support image; each becomes a
    disc of ``radius`` pixels (default: :data:`POINT_RADIUS` times the image's long side).

    Raises:
        ValueError: no point, a point that is not an ``(x, y)`` pair of finite numbers >= 0, or a bad radius.
    """

    points: Sequence[tuple[float, float]]
    radius: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.points, (str, bytes)) or not isinstance(self.points, Sequence | np.ndarray):
            raise TypeError(f"Points takes a list of (x, y) pairs, got {type(self.points).__name__}.")
        if len(self.points) == 0:
            raise ValueError("Points needs at least one (x, y) click on the target; got none.")
        pairs = []
        for i, point in enumerate(self.points):
            if len(point) != 2:
                raise ValueError(f"Points.points[{i}] must be an (x, y) pair, got {point!r}.")
            pairs.append((_number(point[0], f"Points.points[{i}].x"), _number(point[1], f"Points.points[{i}].y")))
        object.__setattr__(self, "points", tuple(pairs))
        object.__setattr__(self, "radius", _radius(self.radius, "Points.radius"))

    def to_mask(self, size: Sequence[int], name: str = "points", canvas: int | None = None) -> np.ndarray:
        """The clicks' discs as a ``uint8 (H, W)`` mask in {0, 1} for an image of ``size = (H, W)`` (``canvas``:
        the model's test size, which bounds the default radius from below).

        Raises:
            ValueError: a click outside the image.
        """
        h, w = size
        centres = np.zeros((h, w), bool)
        for i, (x, y) in enumerate(self.points):
            if x >= w or y >= h:
                raise ValueError(
                    f"{name}: click {i} at (x={x:g}, y={y:g}) is outside the {h}x{w} (H x W) image; "
                    f"clicks need 0 <= x < {w} and 0 <= y < {h}."
                )
            centres[int(y), int(x)] = True
        radius = self.radius if self.radius is not None else default_radius(POINT_RADIUS, size, canvas)
        return dilate_disc(centres, radius).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class Scribble:
    """Strokes drawn on the target: a mask of the support image's size in any form a support mask takes
    (path, PIL, numpy, tensor; bool, {0, 1} or {0, 255}), dilated by ``radius`` pixels (default:
    :data:`SCRIBBLE_RADIUS` times the image's long side; 0 keeps the strokes as drawn).

    Raises:
        ValueError: a bad radius; when rasterised, strokes of another size than the image, or no stroke.
    """

    strokes: Any
    radius: int | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "radius", _radius(self.radius, "Scribble.radius"))

    def to_mask(
        self,
        size: Sequence[int],
        name: str = "scribble",
        canvas: int | None = None,
        mask_threshold: float | None = None,
        max_pixels: int | None = MAX_PIXELS,
    ) -> np.ndarray:
        """The dilated strokes as a ``uint8 (H, W)`` mask in {0, 1} for an image of ``size = (H, W)`` (``canvas``:
        the model's test size, which bounds the default radius from below; ``mask_threshold`` binarises
        anti-aliased strokes and ``max_pixels`` caps their size, as for masks)."""
        strokes = load_mask(self.strokes, f"{name} (scribble strokes)", mask_threshold, max_pixels).numpy() == 1
        if strokes.shape != tuple(size):
            raise ValueError(
                f"{name}: the scribble is {strokes.shape[0]}x{strokes.shape[1]} but its image is "
                f"{size[0]}x{size[1]} (H x W); draw the strokes on a mask of the image's size."
            )
        if not strokes.any():
            raise ValueError(f"{name}: the scribble has no stroke; draw at least one on the target.")
        radius = self.radius if self.radius is not None else default_radius(SCRIBBLE_RADIUS, size, canvas)
        return dilate_disc(strokes, radius).astype(np.uint8)


def support_mask(
    value: Any,
    size: Sequence[int],
    name: str,
    mask_threshold: float | None = None,
    canvas: int | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> torch.Tensor:
    """A support annotation of an image of ``size = (H, W)`` as an int64 ``(H, W)`` mask in {0, 1, 255}:
    a :class:`Box`, :class:`Points` or :class:`Scribble` by its rule (``canvas``: the model's test size, for
    the default radii), anything else read as a mask (:func:`~ntre_zoo.inference.image_io.load_mask`, which
    ``mask_threshold`` binarises and ``max_pixels`` caps; so are scribble strokes)."""
    if isinstance(value, Scribble):
        return torch.from_numpy(value.to_mask(size, name, canvas, mask_threshold, max_pixels)).long()
    if isinstance(value, (Box, Points)):
        return torch.from_numpy(value.to_mask(size, name, canvas)).long()
    return load_mask(value, name, mask_threshold, max_pixels)


# ------------------------------------------------------------------ binary morphology on numpy masks
def _shift(a: np.ndarray, s: int, axis: int) -> np.ndarray:
    """``a`` moved by ``s`` along ``axis`` (positive: towards higher indices), False where nothing moved in."""
    out = np.zeros_like(a)
    n = a.shape[axis]
    if abs(s) >= n:
        return out
    src, dst = [slice(None)] * a.ndim, [slice(None)] * a.ndim
    src[axis], dst[axis] = (slice(0, n - s), slice(s, n)) if s >= 0 else (slice(-s, n), slice(0, n + s))
    out[tuple(dst)] = a[tuple(src)]
    return out


def _dilate_rows(mask: np.ndarray, w: int) -> np.ndarray:
    """True within ``w`` columns of a True pixel of the same row, by doubling windows (O(log w) passes)."""
    length, span = 2 * w + 1, 1
    grown = np.pad(mask, ((0, 0), (0, w)))  # room for the windows that end right of the last column
    while 2 * span <= length:  # grown[x]: any True in the `span` columns ending at x
        grown, span = grown | _shift(grown, span, 1), 2 * span
    if span < length:
        grown = grown | _shift(grown, length - span, 1)
    return grown[:, w:]


def dilate_disc(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within Euclidean distance ``radius`` of a True pixel of the bool ``mask`` (exact disc)."""
    if radius <= 0 or not mask.any():
        return mask.copy()
    ys, xs = np.nonzero(mask)
    top, left = max(0, ys.min() - radius), max(0, xs.min() - radius)
    bottom, right = min(mask.shape[0], ys.max() + radius + 1), min(mask.shape[1], xs.max() + radius + 1)
    crop = mask[top:bottom, left:right]
    rows: dict[int, np.ndarray] = {}
    grown = np.zeros_like(crop)
    for dy in range(-radius, radius + 1):
        w = math.isqrt(radius * radius - dy * dy)
        if w not in rows:
            rows[w] = _dilate_rows(crop, w)
        grown |= _shift(rows[w], dy, 0)
    out = np.zeros_like(mask)
    out[top:bottom, left:right] = grown
    return out


def _bounds(mask: np.ndarray) -> tuple[slice, slice]:
    """The bounding rows and columns of a bool mask's True pixels (it must have one)."""
    ys, xs = np.nonzero(mask)
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def components(target: np.ndarray) -> list[np.ndarray]:
    """The 8-connected components of a bool ``(H, W)`` mask as bool masks, in the raster order of their last
    pixel (none for an empty mask).

    Every target pixel starts with its own raster index and repeatedly takes the largest index of its 3x3
    neighbours, then the index that pixel holds (pointer jumping), until nothing changes: each component
    ends holding its last pixel's index, in a number of rounds that grows with the log of its size.
    """
    if not target.any():
        return []
    box = _bounds(target)
    keep = torch.from_numpy(target[box].copy())
    ids = torch.where(keep, torch.arange(keep.numel(), dtype=torch.float64).view(keep.shape), -1.0)
    while True:
        grown = torch.where(keep, F.max_pool2d(ids[None, None], 3, stride=1, padding=1)[0, 0], -1.0).view(-1)
        while True:
            jumped = torch.where(grown >= 0, grown[grown.clamp(min=0).long()], grown)
            if torch.equal(jumped, grown):
                break
            grown = jumped
        grown = grown.view(keep.shape)
        if torch.equal(grown, ids):
            break
        ids = grown
    out = []
    for label in torch.unique(ids[keep]).tolist():
        component = np.zeros_like(target)
        component[box] = (ids == label).numpy()
        out.append(component)
    return out


def _largest_component(target: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool mask (ties: the one holding the last pixel in raster order)."""
    found = components(target)
    sizes = [int(c.sum()) for c in found]
    return found[len(sizes) - 1 - sizes[::-1].index(max(sizes))]


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning (Comm. ACM 1984) of a bool mask to one-pixel-wide lines."""
    box = _bounds(mask)
    image = np.pad(mask[box], 1)
    changed = True
    while changed:
        changed = False
        for first in (True, False):
            centre = image[1:-1, 1:-1]
            # P2..P9: N, NE, E, SE, S, SW, W, NW
            n = [image[:-2, 1:-1], image[:-2, 2:], image[1:-1, 2:], image[2:, 2:]]
            n += [image[2:, 1:-1], image[2:, :-2], image[1:-1, :-2], image[:-2, :-2]]
            neighbours = sum(p.astype(np.uint8) for p in n)
            transitions = sum((~n[i] & n[(i + 1) % 8]).astype(np.uint8) for i in range(8))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            side = ~(p2 & p4 & p6) & ~(p4 & p6 & p8) if first else ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            delete = centre & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if delete.any():
                image[1:-1, 1:-1] = centre & ~delete
                changed = True
    out = np.zeros_like(mask)
    out[box] = image[1:-1, 1:-1]
    return out


def annotation_from_mask(
    mask: Any, kind: str, *, seed: int = 0, clicks: int = 3, canvas: int | None = None
) -> Box | Points | Scribble:
    """Derive a weak annotation from a ground-truth mask, by the rule the cost table uses.

    All three work on the largest 8-connected component of the target (``mask == 1``):

    * ``box``: its bounding box.
    * ``scribble``: its skeleton (Zhang-Suen thinning); the component itself if thinning leaves nothing.
    * ``points``: ``clicks`` pixels drawn uniformly without replacement (``numpy.random.default_rng(seed)``)
      among those whose default click disc (for ``canvas``) lies inside the component (the component eroded
      by the click radius), or among all its pixels where fewer than ``clicks`` remain.

    Args:
        mask: any form a support mask takes.
        kind: ``box``, ``scribble`` or ``points``.
        seed: the points' seed.
        clicks: how many points.
        canvas: the model's test size, which the default click radius depends on (see :func:`default_radius`).

    Raises:
        ValueError: an unknown kind, ``clicks < 1``, or a mask without target pixel.
    """
    if kind not in ANNOTATION_KINDS:
        raise ValueError(f"kind must be one of {ANNOTATION_KINDS}, got {kind!r}.")
    if clicks < 1:
        raise ValueError(f"clicks must be >= 1, got {clicks!r}.")
    target = load_mask(mask, "mask").numpy() == 1
    if not target.any():
        raise ValueError("mask has no target pixel; a weak annotation needs a target to annotate.")
    component = _largest_component(target)
    if kind == "box":
        rows, cols = _bounds(component)
        return Box(int(cols.start), int(rows.start), int(cols.stop), int(rows.stop))
    if kind == "scribble":
        skeleton = _skeleton(component)
        return Scribble(skeleton if skeleton.any() else component)
    inner = component & ~dilate_disc(~component, default_radius(POINT_RADIUS, component.shape, canvas))
    ys, xs = np.nonzero(inner if inner.sum() >= clicks else component)
    chosen = np.random.default_rng(seed).choice(len(ys), size=min(clicks, len(ys)), replace=False)
    return Points([(int(xs[i]), int(ys[i])) for i in chosen])
