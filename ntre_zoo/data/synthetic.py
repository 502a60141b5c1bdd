"""A procedural few-shot segmentation benchmark in the PASCAL VOC layout.

Every image holds what NTRENet is about: a background made of recurring "stuff" textures (sky, grass,
brick wall, sand, water, planks; all labelled 0), one or more objects of the 20 classes, and the
objects of other classes acting as distractors. A class is a (shape, appearance) pair: ten shapes,
each used by two classes that differ in colour and pattern, so a novel class can only be told apart
from a base class of the same shape by matching the support's appearance. Classes 1-20 fall into the
4 PASCAL-5i folds of 5 (fold ``i`` tests classes ``5i+1 .. 5i+5``), and each fold holds 5 different shapes.

Everything is drawn from ``numpy.random.Generator`` streams derived from ``(seed, split, index)``, so an
image does not depend on how many were generated before it; JPEGs are written with a fixed quality.
Objects are sized so that they pass the spec's 2 * 32 * 32 pixel rule at the default 200 px.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .._atomic import atomic_write_text

__all__ = [
    "STUFF_TEXTURES",
    "SYNTHETIC_CLASSES",
    "SyntheticClass",
    "make_synthetic_voc",
    "render_scene",
    "synthetic_episode",
    "voc_palette",
]

DEFAULT_SIZE = 200
JPEG_QUALITY = 92
_SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon", "crescent", "heart")
_PATTERNS = ("solid", "stripes", "checker", "dots")
#: Twenty well separated object colours (RGB), one per class.
_COLOURS = (
    (220, 30, 30),
    (30, 90, 230),
    (250, 200, 20),
    (150, 40, 200),
    (250, 120, 10),
    (20, 190, 170),
    (240, 70, 170),
    (120, 200, 30),
    (90, 50, 20),
    (255, 255, 255),
    (30, 30, 30),
    (255, 160, 160),
    (0, 120, 60),
    (180, 180, 255),
    (200, 0, 90),
    (100, 100, 100),
    (255, 230, 150),
    (0, 200, 255),
    (130, 0, 0),
    (170, 255, 170),
)
#: Background stuff kinds; each image's background is 2-3 of them in horizontal bands.
STUFF_TEXTURES = ("sky", "grass", "wall", "sand", "water", "planks")
_SPLIT_CODES = {"train": 1, "val": 2, "episode": 3}


@dataclass(frozen=True)
class SyntheticClass:
    """One object class of the synthetic benchmark.

    Args:
        class_id: 1-based id, the value in the label PNGs.
        shape: outline name (``circle``, ``star`` ...).
        colour: main RGB colour.
        pattern: ``solid``, ``stripes``, ``checker`` or ``dots`` (drawn with a darkened second colour).
    """

    class_id: int
    shape: str
    colour: tuple[int, int, int]
    pattern: str

    @property
    def name(self) -> str:
        return f"{self.pattern}_{self.shape}"


def _make_classes() -> tuple[SyntheticClass, ...]:
    # Class c has shape (c-1) % 10: classes c and c+10 share a shape and differ in colour and pattern.
    return tuple(
        SyntheticClass(c, _SHAPES[(c - 1) % 10], _COLOURS[c - 1], _PATTERNS[((c - 1) // 10 + (c - 1)) % 4])
        for c in range(1, 21)
    )


SYNTHETIC_CLASSES: tuple[SyntheticClass, ...] = _make_classes()


def voc_palette() -> list[int]:
    """The 256-entry PASCAL VOC colour map as a flat ``[r, g, b, ...]`` list (index 255 is cream)."""
    palette: list[int] = []
    for index in range(256):
        r = g = b = 0
        c = index
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.extend((r, g, b))
    return palette


# ---------------------------------------------------------------------------------------------- textures
def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled uniform noise in [0, 1], ``cells`` knots across."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def _stuff(kind: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An ``(h, w, 3)`` float texture in [0, 255] of one stuff kind."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fine = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    low = _smooth_noise(rng, h, w, 4)
    if kind == "sky":
        t = yy / max(h - 1, 1)
        base = np.stack([90 + 80 * t, 150 + 60 * t, 235 - 10 * t], -1)
        return base + 25 * (low[..., None] - 0.5) * np.array([1, 1, 0.3]) + 2 * fine[..., None]
    if kind == "grass":
        streaks = _smooth_noise(rng, h // 8 + 2, w, w // 3)[: h // 8 + 2]
        streaks = np.asarray(Image.fromarray(streaks, mode="F").resize((w, h), Image.Resampling.BILINEAR))
        base = np.stack([50 + 40 * low, 120 + 60 * streaks, 40 + 20 * low], -1)
        return base + 12 * fine[..., None]
    if kind == "wall":
        brick_h, brick_w = 10 + int(rng.integers(0, 5)), 24 + int(rng.integers(0, 8))
        row = (yy // brick_h).astype(int)
        mortar = (yy % brick_h < 2) | (((xx + (row % 2) * brick_w / 2) % brick_w) < 2)
        shade = _smooth_noise(rng, h, w, 8)
        base = np.stack([150 + 50 * shade, 70 + 25 * shade, 55 + 15 * shade], -1)
        base[mortar] = (200, 195, 185)
        return base + 6 * fine[..., None]
    if kind == "sand":
        base = np.stack([215 + 20 * low, 190 + 20 * low, 140 + 15 * low], -1)
        return base + 14 * fine[..., None]
    if kind == "water":
        phase = rng.uniform(0, 2 * np.pi)
        waves = np.sin(xx / 7.0 + 3 * np.sin(yy / 11.0 + phase)) * 0.5 + 0.5
        base = np.stack([20 + 30 * waves, 90 + 50 * waves, 130 + 50 * low], -1)
        return base + 4 * fine[..., None]
    if kind == "planks":
        plank = 14 + int(rng.integers(0, 6))
        grain = np.sin(yy * 1.3 + 4 * _smooth_noise(rng, h, w, 6)) * 0.5 + 0.5
        seams = (xx % plank) < 1.5
        base = np.stack([140 + 30 * grain, 95 + 20 * grain, 55 + 10 * grain], -1)
        base[seams] *= 0.55
        return base + 5 * fine[..., None]
    raise ValueError(f"Unknown stuff texture {kind!r}; expected one of {STUFF_TEXTURES}.")


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """2-3 stuff textures in wavy horizontal bands, ``(h, w, 3)`` float."""
    count = int(rng.integers(2, 4))
    kinds = rng.choice(len(STUFF_TEXTURES), size=count, replace=False)
    cuts = np.sort(rng.uniform(0.2, 0.8, size=count - 1)) * h
    xx = np.arange(w, dtype=np.float32)
    band = np.zeros((h, w), dtype=np.int64)
    yy = np.arange(h, dtype=np.float32)[:, None]
    for cut in cuts:
        boundary = cut + rng.uniform(3, 10) * np.sin(xx * rng.uniform(0.02, 0.08) + rng.uniform(0, 2 * np.pi))
        band += (yy >= boundary[None, :]).astype(np.int64)
    image = np.zeros((h, w, 3), dtype=np.float32)
    for i, kind in enumerate(kinds):
        region = band == i
        if region.any():
            image[region] = _stuff(STUFF_TEXTURES[int(kind)], rng, h, w)[region]
    return image


# ------------------------------------------------------------------------------------------------ shapes
def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` in object coordinates where the shape spans about [-1, 1]^2."""
    rho = np.hypot(u, v)
    phi = np.arctan2(v, u)
    if shape == "circle":
        return rho <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape in ("triangle", "hexagon"):
        n = 3 if shape == "triangle" else 6
        sector = np.mod(phi + np.pi / 2, 2 * np.pi / n) - np.pi / n
        return rho * np.cos(sector) <= np.cos(np.pi / n)
    if shape == "star":
        t = np.mod((phi + np.pi / 2) * 5 / (2 * np.pi), 1.0)
        return rho <= 0.5 + 0.5 * np.abs(1 - 2 * t)
    if shape == "ring":
        return (rho <= 1.0) & (rho >= 0.5)
    if shape == "cross":
        arm = 0.36
        return ((np.abs(u) <= arm) & (np.abs(v) <= 1)) | ((np.abs(v) <= arm) & (np.abs(u) <= 1))
    if shape == "diamond":
        return np.abs(u) / 0.75 + np.abs(v) <= 1.0
    if shape == "crescent":
        return (rho <= 1.0) & (np.hypot(u - 0.55, v) >= 0.8)
    if shape == "heart":
        x, y = 1.15 * u, -1.15 * v + 0.15
        return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0
    raise ValueError(f"Unknown shape {shape!r}; expected one of {_SHAPES}.")


def _fill_fraction(shape: str) -> float:
    """Fraction of the [-1, 1]^2 box the shape covers (numerically, on a 96^2 grid)."""
    g = (np.arange(96, dtype=np.float32) + 0.5) / 48 - 1
    u, v = np.meshgrid(g, g)
    return float(_inside(shape, u, v).mean())


def _draw_object(
    rng: np.random.Generator,
    image: np.ndarray,
    label: np.ndarray,
    spec: SyntheticClass,
    centre: tuple[float, float],
    radius: float,
) -> None:
    """Paint one instance of ``spec`` into ``image``/``label`` in place."""
    h, w = label.shape
    angle = rng.uniform(0, 2 * np.pi)
    stretch = rng.uniform(0.85, 1.15)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = (xx - centre[0]) / radius, (yy - centre[1]) / radius
    u = (np.cos(angle) * dx + np.sin(angle) * dy) * stretch
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / stretch
    mask = _inside(spec.shape, u, v)
    colour = np.asarray(spec.colour, dtype=np.float32) * rng.uniform(0.85, 1.1)
    second = np.asarray(spec.colour, dtype=np.float32) * 0.35 + 20
    k = rng.uniform(3.0, 4.5)
    if spec.pattern == "stripes":
        alt = np.sin(u * k * np.pi) > 0
    elif spec.pattern == "checker":
        alt = (np.floor(u * k * 0.8) + np.floor(v * k * 0.8)) % 2 == 1
    elif spec.pattern == "dots":
        fu, fv = np.mod(u * k * 0.8, 1.0) - 0.5, np.mod(v * k * 0.8, 1.0) - 0.5
        alt = fu * fu + fv * fv < 0.09
    else:
        alt = np.zeros_like(mask)
    shading = 1.0 - 0.15 * np.clip(u * 0.5 + v * 0.5, -1, 1)
    paint = np.where(alt[..., None], second, colour) * shading[..., None]
    image[mask] = paint[mask]
    label[mask] = spec.class_id


def render_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    class_ids: Sequence[int],
    *,
    protect_first: bool = False,
    ignore_border: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one scene: stuff background plus one object per entry of ``class_ids``.

    Args:
        rng: the generator every random choice is drawn from.
        height, width: image size in pixels.
        class_ids: classes to draw (1-20), in drawing order.
        protect_first: draw ``class_ids[0]`` last, away from the others, so it stays whole.
        ignore_border: mark a 1-pixel outline of every object 255, as VOC's ``SegmentationClass`` does.

    Returns:
        ``(image, label)``: ``(H, W, 3)`` uint8 RGB and ``(H, W)`` uint8 with class ids, 0 and 255.
    """
    for c in class_ids:
        if not 1 <= int(c) <= len(SYNTHETIC_CLASSES):
            raise ValueError(f"class id {c!r} is out of range; synthetic classes are 1..{len(SYNTHETIC_CLASSES)}.")
    image = _background(rng, height, width)
    label = np.zeros((height, width), dtype=np.uint8)
    side = min(height, width)
    placed: list[tuple[float, float, float]] = []
    order = [*list(class_ids[1:]), class_ids[0]] if protect_first else list(class_ids)
    for n, c in enumerate(order):
        spec = SYNTHETIC_CLASSES[int(c) - 1]
        area = rng.uniform(0.07, 0.15) * height * width
        radius = min(np.sqrt(area / (4 * _fill_fraction(spec.shape))), 0.45 * side)
        is_protected = protect_first and n == len(order) - 1
        best, best_overlap = (width / 2, height / 2), np.inf
        for _ in range(25):
            centre = (rng.uniform(radius, width - radius), rng.uniform(radius, height - radius))
            overlap = sum(max(0.0, r + radius - np.hypot(centre[0] - x, centre[1] - y)) for x, y, r in placed)
            if overlap < best_overlap:
                best, best_overlap = centre, overlap
            if overlap == 0 or (not is_protected and overlap < 0.3 * radius):
                break
        placed.append((best[0], best[1], radius))
        _draw_object(rng, image, label, spec, best, radius)
    image += rng.normal(0.0, 3.0, image.shape).astype(np.float32)
    if ignore_border:
        edge = np.zeros_like(label, dtype=bool)
        edge[:-1] |= label[:-1] != label[1:]
        edge[1:] |= label[:-1] != label[1:]
        edge[:, :-1] |= label[:, :-1] != label[:, 1:]
        edge[:, 1:] |= label[:, :-1] != label[:, 1:]
        label[edge & (label > 0)] = 255
    return np.clip(image, 0, 255).astype(np.uint8), label


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT_CODES[split], int(index)])


def synthetic_episode(
    seed: int,
    *,
    fold: int = 0,
    shot: int = 1,
    size: int = DEFAULT_SIZE,
    novel: bool = True,
    distractors: int = 2,
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """Render one in-memory few-shot episode (no files), e.g. for an offline demo.

    The target class is drawn from fold ``fold``'s 5 test classes (``novel=True``) or its 15 training
    classes; every image also holds ``distractors`` objects of other classes on a stuff background.

    Args:
        seed: everything is a function of it (and of the other arguments).
        fold: PASCAL-5i-style fold 0-3.
        shot: number of supports K.
        size: side of the square images.
        novel: target from the fold's test classes (True) or its training classes.
        distractors: non-target objects per image.

    Returns:
        ``(support_images, support_masks, query_image, query_mask)``: K ``(size, size, 3)`` uint8 RGB
        arrays, K ``(size, size)`` uint8 masks in {0, 1}, and the query's image and mask.

    Raises:
        ValueError: a fold outside 0-3, ``shot < 1``, ``size < 64`` or negative ``distractors``.
    """
    if fold not in (0, 1, 2, 3):
        raise ValueError(f"fold must be 0, 1, 2 or 3, got {fold!r}.")
    if shot < 1:
        raise ValueError(f"shot must be >= 1, got {shot!r}.")
    if size < 64:
        raise ValueError(f"size must be at least 64 pixels so objects stay recognisable, got {size!r}.")
    if distractors < 0:
        raise ValueError(f"distractors must be >= 0, got {distractors!r}.")
    rng = _rng(seed, "episode", fold * 1000 + shot * 10 + int(novel))
    test = list(range(5 * fold + 1, 5 * fold + 6))
    pool = test if novel else [c for c in range(1, 21) if c not in test]
    target = int(rng.choice(pool))
    others = [c for c in range(1, 21) if c != target]
    images, masks = [], []
    for _ in range(shot + 1):
        chosen = [target] + [int(c) for c in rng.choice(others, size=distractors, replace=False)]
        image, label = render_scene(rng, size, size, chosen, protect_first=True, ignore_border=False)
        images.append(image)
        masks.append((label == target).astype(np.uint8))
    return images[:-1], masks[:-1], images[-1], masks[-1]


def _save_pair(image: np.ndarray, label: np.ndarray, voc: Path, name: str, palette: list[int]) -> None:
    Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg", quality=JPEG_QUALITY, subsampling=0)
    png = Image.fromarray(label, mode="P")
    png.putpalette(palette)
    png.save(voc / "SegmentationClassAug" / f"{name}.png")


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def make_synthetic_voc(
    out_dir: str | Path,
    seed: int = 0,
    *,
    train: int = 1000,
    val: int = 300,
    size: int = DEFAULT_SIZE,
    progress: bool = True,
) -> Path:
    """Write the synthetic benchmark to ``out_dir`` in the VOC layout the PASCAL-5i loader reads.

    Layout: ``out_dir/VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClassAug/*.png}`` (palette PNGs
    with class ids 1-20, 0 background, 255 object outlines), ``ImageSets/SegmentationAug/train_aug.txt``,
    ``ImageSets/Segmentation/val.txt`` and ``synthetic.json`` (seed, sizes, class table). Image sides
    are ``size`` on the long side and 75-100 % of it on the other, so the aspect-ratio path is exercised.

    Args:
        out_dir: where to write (created if needed).
        seed: the dataset is a pure function of ``seed``, ``size`` and the image index.
        train, val: number of training and validation images.
        size: long side in pixels (>= 96; objects are sized for the 2048-pixel rule at about 200).
        progress: show a tqdm bar.

    Returns:
        The ``VOC2012`` directory, to pass as ``--data-root``.

    Raises:
        ValueError: negative counts or ``size < 96``.
    """
    if train < 0 or val < 0:
        raise ValueError(f"train and val must be >= 0, got train={train!r}, val={val!r}.")
    if size < 96:
        raise ValueError(f"size must be at least 96 pixels, got {size!r}.")
    voc = Path(out_dir) / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClassAug"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    palette = voc_palette()
    names: dict[str, list[str]] = {"train": [], "val": []}
    jobs = [("train", i) for i in range(train)] + [("val", i) for i in range(val)]
    for split, index in tqdm(jobs, desc="synthetic images", disable=not progress):
        rng = _rng(seed, split, index)
        short = round(size * rng.uniform(0.75, 1.0))
        height, width = (size, short) if rng.random() < 0.5 else (short, size)
        count = int(rng.integers(1, 4))
        class_ids = [int(c) + 1 for c in rng.choice(len(SYNTHETIC_CLASSES), size=count, replace=False)]
        image, label = render_scene(rng, height, width, class_ids)
        name = f"synth_{split}_{index:06d}"
        _save_pair(image, label, voc, name, palette)
        names[split].append(name)
    _write_lines(voc / "ImageSets" / "SegmentationAug" / "train_aug.txt", names["train"])
    _write_lines(voc / "ImageSets" / "Segmentation" / "val.txt", names["val"])
    meta = {
        "seed": seed,
        "train": train,
        "val": val,
        "size": size,
        "classes": [
            {"id": c.class_id, "name": c.name, "shape": c.shape, "colour": list(c.colour), "pattern": c.pattern}
            for c in SYNTHETIC_CLASSES
        ],
        "stuff": list(STUFF_TEXTURES),
    }
    tmp = voc / "synthetic.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, voc / "synthetic.json")
    return voc
