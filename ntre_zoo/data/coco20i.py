"""COCO-20i from COCO 2014 (``train2014/``, ``val2014/``, ``annotations/instances_{train,val}2014.json``).

The instance annotations are turned into semantic label PNGs once, with pycocotools, under
``DATA_ROOT/ntre_zoo_labels/`` (by ``ntre-zoo prepare coco20i``, or on first use); category ids (1-90 with
gaps in real COCO) are mapped to contiguous 1..80 in increasing id order, as in the reference's label PNGs
(spec section 7.3). A finished label folder holds ``index.json`` (the labelled images and class names), so
later runs read neither the annotation file nor pycocotools.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .._atomic import atomic_write_json
from .episodes import ImageSource
from .index import write_label

__all__ = ["build_coco_labels", "coco20i_source", "coco_category_map", "coco_label_index"]

LABEL_DIR = "ntre_zoo_labels"
CACHE_DIR = "ntre_zoo_cache"


def _load_coco(annotation: Path) -> Any:
    try:
        from pycocotools.coco import COCO
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError("COCO-20i needs pycocotools: pip install 'ntre-zoo[coco]'.") from error
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints timing lines
        return COCO(str(annotation))


def coco_category_map(coco: Any) -> dict[int, tuple[int, str]]:
    """COCO category id -> ``(contiguous id 1..N, name)``, in increasing category-id order."""
    return {
        cat["id"]: (i + 1, cat["name"])
        for i, cat in enumerate(sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"]))
    }


def _stamp(path: Path) -> str:
    """The first 12 hex digits of the file's sha256: the same labels for the same annotations wherever the
    tree is copied."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def coco_label_index(root: Path, split: str) -> Path:
    """The ``index.json`` that :func:`build_coco_labels` writes last for ``root``'s annotation file of ``split``."""
    annotation = root / "annotations" / f"instances_{split}2014.json"
    return root / LABEL_DIR / f"{split}2014_{_stamp(annotation)}" / "index.json"


def build_coco_labels(
    root: Path, split: str, *, progress: bool = True
) -> tuple[list[tuple[Path, Path]], dict[int, str]]:
    """Write one semantic label PNG per annotated image (once) and return the pairs and class names.

    Instances are painted largest first so that smaller objects stay visible on top; crowd regions are
    painted with their class too. The label folder name holds a content hash of the annotation file, so a new
    annotation file gives new labels; its ``index.json``, written last, lets later calls skip the annotations.

    Returns:
        ``(pairs, class_names)``: ``(image, label)`` paths sorted by file name, contiguous id -> name.
    """
    annotation = root / "annotations" / f"instances_{split}2014.json"
    if not annotation.is_file():
        raise FileNotFoundError(
            f"No COCO annotation file {str(annotation)!r}; the COCO-20i root must hold {split}2014/ and "
            f"annotations/instances_{split}2014.json."
        )
    index = coco_label_index(root, split)
    label_dir = index.parent
    if index.is_file():
        done = json.loads(index.read_text())
        pairs = [(root / f"{split}2014" / name, label_dir / f"{Path(name).stem}.png") for name in done["images"]]
        return pairs, {int(c): str(n) for c, n in done["class_names"].items()}
    coco = _load_coco(annotation)
    categories = coco_category_map(coco)
    label_dir.mkdir(parents=True, exist_ok=True)
    pairs = []
    images = sorted(coco.loadImgs(coco.getImgIds()), key=lambda info: info["file_name"])
    for info in tqdm(images, desc=f"COCO {split} labels", disable=not progress):
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=info["id"], iscrowd=None))
        if not annotations:
            continue
        image_path = root / f"{split}2014" / info["file_name"]
        label_path = label_dir / f"{Path(info['file_name']).stem}.png"
        pairs.append((image_path, label_path))
        if label_path.is_file():
            continue
        label = np.zeros((info["height"], info["width"]), dtype=np.uint8)
        for ann in sorted(annotations, key=lambda a: -a.get("area", 0.0)):
            label[coco.annToMask(ann) > 0] = categories[ann["category_id"]][0]
        write_label(label_path, label)
    names = dict(categories.values())
    atomic_write_json(index, {"images": [image.name for image, _ in pairs], "class_names": names})
    return pairs, names


def coco20i_source(root: str | Path, split: str, *, progress: bool = True) -> ImageSource:
    """The image/label pairs of COCO 2014 ``train`` or ``val``, building the label cache if needed.

    Raises:
        FileNotFoundError: missing image folder or annotation file.
        ValueError: an unknown split.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}.")
    root = Path(root).expanduser()
    if not (root / f"{split}2014").is_dir():
        raise FileNotFoundError(
            f"No {split}2014/ folder under {str(root)!r}; pass the COCO root holding train2014/, "
            "val2014/ and annotations/."
        )
    pairs, names = build_coco_labels(root, split, progress=progress)
    if len(names) != 80:
        import warnings

        warnings.warn(
            f"{split} annotations define {len(names)} categories, not COCO's 80; ids are mapped to 1..{len(names)}.",
            stacklevel=2,
        )
    return ImageSource(
        name=f"coco20i_{split}",
        root=root,
        images=tuple(p[0] for p in pairs),
        labels=tuple(p[1] for p in pairs),
        class_names=names,
        cache_dir=root / CACHE_DIR,
        benchmark="coco20i",
    )
