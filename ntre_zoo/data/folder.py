"""A few-shot dataset from a folder of your own: ``images/``, ``masks/`` and an optional ``classes.json``.

Layout::

    ROOT/images/NAME.jpg|.jpeg|.png     any RGB image
    ROOT/masks/NAME.png                 single-channel PNG: class ids, 0 background, 255 ignore
    ROOT/classes.json                   optional: {"1": "cat", "2": "dog"} or ["cat", "dog"] (ids 1, 2 ...)
    ROOT/train.txt, ROOT/val.txt        optional: NAMEs of each split (default: every image in both)

Which classes are novel is the user's choice (``novel_classes``); the others are the training classes.
"""

from __future__ import annotations

import json
from pathlib import Path

from .episodes import ImageSource

__all__ = ["folder_class_names", "folder_source"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CACHE_DIR = "ntre_zoo_cache"


def folder_class_names(root: str | Path) -> dict[int, str] | None:
    """``classes.json`` as ``{id: name}``, or None when the file is absent.

    Raises:
        ValueError: the file is neither a list of names nor an ``{id: name}`` object, or uses id 0/255.
    """
    path = Path(root) / "classes.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error}).") from None
    if isinstance(data, list):
        names = {i + 1: str(n) for i, n in enumerate(data)}
    elif isinstance(data, dict):
        try:
            names = {int(k): str(v) for k, v in data.items()}
        except ValueError as error:
            raise ValueError(f'{str(path)!r}: keys must be class ids like "1", got {sorted(data)!r}.') from error
    else:
        raise ValueError(
            f'{str(path)!r} must hold a JSON list of names, e.g. ["cat", "dog"], or an object of id: name, e.g. '
            f'{{"1": "cat", "2": "dog"}}; got a JSON {type(data).__name__}.'
        )
    bad = sorted(c for c in names if not 1 <= c <= 254)
    if bad:
        raise ValueError(f"{str(path)!r}: class ids must be in 1..254 (0 is background, 255 ignore), got {bad}.")
    return names


def folder_source(root: str | Path, split: str) -> ImageSource:
    """The image/mask pairs of ``split`` (``train`` or ``val``) of a folder dataset.

    Raises:
        FileNotFoundError: no ``images/``/``masks/`` folder, an image without a mask, or a listed name missing.
        ValueError: an unknown split.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}.")
    root = Path(root).expanduser()
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise FileNotFoundError(f"{str(root)!r} must hold images/ and masks/ folders (one mask PNG per image).")
    images = {p.stem: p for p in sorted((root / "images").iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    names: tuple[str, ...] = tuple(sorted(images))
    listed = root / f"{split}.txt"
    if listed.is_file():
        names = tuple(line.strip() for line in listed.read_text().splitlines() if line.strip())
        missing = [n for n in names if n not in images]
        if missing:
            raise FileNotFoundError(f"{str(listed)!r} names images not in images/: {missing[:5]}.")
    labels = tuple(root / "masks" / f"{n}.png" for n in names)
    missing = [str(p) for p in labels if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"No mask for {len(missing)} image(s), e.g. {missing[0]!r}; add masks/NAME.png for each image."
        )
    return ImageSource(
        name=f"folder_{split}",
        root=root,
        images=tuple(images[n] for n in names),
        labels=labels,
        class_names=folder_class_names(root) or {},
        cache_dir=root / CACHE_DIR,
    )
