"""PASCAL-5i from a ``VOCdevkit/VOC2012`` tree with ``JPEGImages/`` and ``SegmentationClassAug/`` (VOC + SBD)."""

from __future__ import annotations

import json
from pathlib import Path

from .episodes import ImageSource
from .reference_lists import resolve_list
from .splits import PASCAL_CLASSES

__all__ = ["TRAIN_LISTS", "VAL_LISTS", "find_voc_root", "is_synthetic_tree", "pascal5i_source"]

#: Image lists looked for, first found wins (paths relative to ``VOC2012``).
TRAIN_LISTS = ("ImageSets/SegmentationAug/train_aug.txt", "ImageSets/SegmentationAug/trainaug.txt")
VAL_LISTS = ("ImageSets/Segmentation/val.txt", "ImageSets/SegmentationAug/val.txt")
CACHE_DIR = "ntre_zoo_cache"


def find_voc_root(root: str | Path) -> Path:
    """The ``VOC2012`` directory given it, ``VOCdevkit`` or their parent.

    Raises:
        FileNotFoundError: none of them holds ``JPEGImages/`` and ``SegmentationClassAug/``.
    """
    root = Path(root).expanduser()
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "SegmentationClassAug").is_dir():
            return candidate
    raise FileNotFoundError(
        f"No PASCAL VOC tree under {str(root)!r}: expected VOC2012/ (or VOCdevkit/VOC2012/) with JPEGImages/ "
        "and SegmentationClassAug/. Pass the VOC2012 directory as the data root, or make a synthetic one "
        "with `ntre-zoo make-synthetic -o OUT`."
    )


def is_synthetic_tree(root: str | Path) -> bool:
    """Whether ``root`` holds the synthetic benchmark (``ntre-zoo make-synthetic``: a VOC tree with
    ``synthetic.json``), whose own lists stand in for PASCAL VOC's."""
    try:
        return (find_voc_root(root) / "synthetic.json").is_file()
    except FileNotFoundError:
        return False


def _read_list(voc: Path, path: Path) -> list[tuple[Path, Path]]:
    """Lines are image ids (``2007_000032``) or ``JPEGImages/x.jpg SegmentationClassAug/x.png`` pairs."""
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 1:
            pairs.append((voc / "JPEGImages" / f"{parts[0]}.jpg", voc / "SegmentationClassAug" / f"{parts[0]}.png"))
        elif len(parts) == 2:
            pairs.append((voc / parts[0].lstrip("/"), voc / parts[1].lstrip("/")))
        else:
            raise ValueError(f"{str(path)!r} line {number}: expected an image id or 'image label' paths, got {line!r}.")
    return pairs


def _first_list(voc: Path, names: tuple[str, ...]) -> Path | None:
    return next((voc / n for n in names if (voc / n).is_file()), None)


def pascal5i_source(
    root: str | Path, split: str, *, train_list: str | Path | None = None, val_list: str | Path | None = None
) -> ImageSource:
    """The image/label pairs of the ``train`` or ``val`` split.

    ``train_list``/``val_list`` (a shipped list name such as ``voc_sbd_merge_noduplicate``, or a file) win;
    otherwise the tree's standard lists are used when present (``train_aug.txt``, ``val.txt``). Without
    any, ``val`` is every label in ``SegmentationClassAug`` and ``train`` every label not in the val list.
    Train entries that also appear in the val list are dropped, and duplicates are removed (as the
    reference's ``voc_sbd_merge_noduplicate`` list), keeping the first occurrence.

    Raises:
        FileNotFoundError: no VOC tree, no such list, or a listed image or label is missing.
        ValueError: an unknown split.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}.")
    voc = find_voc_root(root)
    val_file = resolve_list(val_list) if val_list is not None else _first_list(voc, VAL_LISTS)
    val_pairs = _read_list(voc, val_file) if val_file else None
    list_file = val_file
    if split == "val":
        pairs = val_pairs
    else:
        list_file = resolve_list(train_list) if train_list is not None else _first_list(voc, TRAIN_LISTS)
        pairs = _read_list(voc, list_file) if list_file else None
    if pairs is None:
        list_file = None
        labels = sorted((voc / "SegmentationClassAug").glob("*.png"))
        pairs = [(voc / "JPEGImages" / f"{p.stem}.jpg", p) for p in labels]
    if split == "train" and val_pairs:
        held_out = {label.stem for _, label in val_pairs}
        pairs = [p for p in pairs if p[1].stem not in held_out]
    seen, unique = set(), []
    for pair in pairs:
        if pair not in seen:
            seen.add(pair)
            unique.append(pair)
    missing = [str(path) for pair in unique for path in pair if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} file(s) listed for PASCAL-5i {split} do not exist, e.g. {missing[0]!r}. Build the "
            "tree from the official archives with `ntre-zoo prepare pascal5i`."
        )
    return ImageSource(
        name=f"pascal5i_{split}",
        root=voc,
        images=tuple(p[0] for p in unique),
        labels=tuple(p[1] for p in unique),
        class_names=_class_names(voc),
        cache_dir=voc / CACHE_DIR,
        benchmark="pascal5i",
        list_file=list_file,
    )


def _class_names(voc: Path) -> dict[int, str]:
    """PASCAL VOC's names, or the synthetic benchmark's own when its ``synthetic.json`` is in the tree."""
    description = voc / "synthetic.json"
    if description.is_file():
        return {int(c["id"]): str(c["name"]) for c in json.loads(description.read_text())["classes"]}
    return {i + 1: n for i, n in enumerate(PASCAL_CLASSES)}
