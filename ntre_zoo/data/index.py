"""Per-class file lists (spec section 7.3): pixel counts per label, cached as JSON beside the data.

Counting every label once is the slow part on the real benchmarks, so the counts of *all* classes are
cached (one file per dataset and split, shared by every fold) and the fold-specific lists are derived
from them. The cache name holds a hash of the label file list (relative paths and sizes), so adding,
removing or rewriting labels rebuilds it; writes go to a temporary file and are moved in place atomically.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .._atomic import atomic_write, atomic_write_text

__all__ = ["MIN_PIXELS", "ClassLists", "build_class_lists", "label_class_counts", "read_label", "write_label"]

#: A class counts in an image only with at least 2 * 32 * 32 pixels (PFENet ``make_dataset``).
MIN_PIXELS = 2 * 32 * 32
_CACHE_VERSION = 1


def read_label(path: Path) -> np.ndarray:
    """A label PNG as an ``(H, W)`` uint8 array of class ids (palette indices for palette PNGs).

    Raises:
        ValueError: the file is not a single-channel (``P``, ``L``) image.
    """
    with Image.open(path) as image:
        if image.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(
                f"Label {str(path)!r} has mode {image.mode!r}; labels must be single-channel PNGs whose pixel "
                "values are class ids (palette or greyscale), not colour images."
            )
        return np.asarray(image).astype(np.int64).clip(0, 255).astype(np.uint8)


def write_label(path: Path, label: np.ndarray) -> None:
    """Write an ``(H, W)`` uint8 class-id map as a single-channel PNG, atomically (what :func:`read_label` reads)."""
    atomic_write(path, lambda tmp: Image.fromarray(label, mode="L").save(tmp, format="PNG"))


def _list_key(root: Path, labels: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in labels:
        digest.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:20]


def label_class_counts(
    labels: Sequence[Path],
    *,
    root: Path,
    cache_dir: Path | None,
    name: str,
    progress: bool = True,
) -> list[dict[int, int]]:
    """Pixel count of every class (0 and 255 excluded) in every label, computed once and cached.

    Args:
        labels: label files, all under ``root``.
        root: the data root the cache key's relative paths are taken from.
        cache_dir: where the JSON cache goes; ``None`` disables caching.
        name: a prefix for the cache file (e.g. ``pascal5i_train``).
        progress: show a tqdm bar while counting.

    Returns:
        One ``{class_id: pixels}`` dict per label, in order.
    """
    key = _list_key(root, labels)
    cache = None if cache_dir is None else Path(cache_dir) / f"{name}_classes_{key}.json"
    if cache is not None and cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("version") == _CACHE_VERSION and len(data.get("counts", [])) == len(labels):
            return [{int(c): int(n) for c, n in counts.items()} for counts in data["counts"]]
    counts = []
    for path in tqdm(labels, desc=f"indexing {name}", disable=not progress):
        histogram = np.bincount(read_label(path).ravel(), minlength=256)
        counts.append({int(c): int(histogram[c]) for c in np.flatnonzero(histogram) if c not in (0, 255)})
    if cache is not None:
        try:
            atomic_write_text(cache, json.dumps({"version": _CACHE_VERSION, "counts": counts}))
        except OSError as error:
            warnings.warn(
                f"Could not write the class-list cache {str(cache)!r} ({error}); it will be rebuilt next time.",
                stacklevel=2,
            )
    return counts


@dataclass(frozen=True)
class ClassLists:
    """The data list and per-class file lists of one split.

    Args:
        data: indices of the images with at least one class of the split above the pixel threshold.
        per_class: for each split class, the indices of the images where it passes the threshold.
        present: for each image, the split classes present in it at all (any pixel count), as the
            reference picks an episode's class among those without a pixel check.
    """

    data: tuple[int, ...]
    per_class: dict[int, tuple[int, ...]]
    present: tuple[tuple[int, ...], ...]


def build_class_lists(
    counts: Sequence[dict[int, int]],
    classes: Sequence[int],
    min_pixels: int = MIN_PIXELS,
    exclude: Sequence[int] = (),
) -> ClassLists:
    """Apply the spec's rule: a class counts in an image only with at least ``min_pixels`` pixels; an image
    enters the data list when at least one of ``classes`` counts in it.

    Args:
        counts: output of :func:`label_class_counts`.
        classes: the split's class ids.
        min_pixels: the threshold (2048 in the reference).
        exclude: an image showing any of these classes (any pixel count) enters no list (BAM's
            ``filter_intersection`` drops training images with a test class).
    """
    wanted, excluded = {int(c) for c in classes}, {int(c) for c in exclude}
    per_class: dict[int, list[int]] = {int(c): [] for c in classes}
    data, present = [], []
    for index, image_counts in enumerate(counts):
        kept = (
            []
            if excluded & set(image_counts)
            else [c for c, n in image_counts.items() if c in wanted and n >= min_pixels]
        )
        present.append(tuple(sorted(c for c, n in image_counts.items() if c in wanted and n > 0)))
        if kept:
            data.append(index)
            for c in kept:
                per_class[c].append(index)
    return ClassLists(tuple(data), {c: tuple(v) for c, v in per_class.items()}, tuple(present))
