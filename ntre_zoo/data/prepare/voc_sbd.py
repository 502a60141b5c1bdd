"""PASCAL-5i from the two official archives: VOC 2012 trainval and SBD (``benchmark.tgz``).

Writes ``OUT/VOCdevkit/VOC2012/`` with ``JPEGImages/`` (every image that has a label), ``SegmentationClassAug/``
(single-channel PNGs of class ids: VOC's own label where VOC has one, its 255 boundary band kept; SBD's
``GTcls.Segmentation`` from ``dataset/cls/ID.mat`` for the others, as it is, without a boundary band),
``ImageSets/Segmentation/`` (VOC's lists, copied) and ``ImageSets/SegmentationAug/train_aug.txt`` (VOC train
and SBD train+val minus VOC val: 10,582 ids on the real archives). Both archives are indexed and checked
before anything is written; each file is written atomically, and a re-run skips the files already there.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..index import write_label
from .archives import Archive
from .tree import PrepareSummary, WritePlan, copy_member, write_texts

__all__ = ["RECORD", "prepare_pascal5i", "read_sbd_label", "read_voc_label"]

RECORD = "ntre_zoo_prepare.json"


def _loadmat(data: bytes) -> Any:
    try:
        from scipy.io import loadmat
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError("Reading SBD's .mat files needs scipy: pip install 'ntre-zoo[prepare]'.") from error
    return loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)


def read_voc_label(data: bytes, name: str) -> np.ndarray:
    """A VOC ``SegmentationClass`` PNG (palette) as an ``(H, W)`` uint8 array of class ids, 255 kept.

    Raises:
        ValueError: not a single-channel PNG.
    """
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{name}: a VOC label must be a palette or greyscale PNG, got mode {image.mode!r}.")
        return np.asarray(image, dtype=np.uint8)


def read_sbd_label(data: bytes, name: str) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD ``cls/ID.mat`` as an ``(H, W)`` uint8 array of class ids.

    Raises:
        ValueError: no ``GTcls`` struct with a 2-D ``Segmentation`` in 0..255.
    """
    try:
        segmentation = np.asarray(_loadmat(data)["GTcls"].Segmentation)
    except (KeyError, AttributeError, ValueError, TypeError) as error:
        raise ValueError(f"{name}: not an SBD class label (no GTcls.Segmentation: {error}).") from error
    if segmentation.ndim != 2 or segmentation.size == 0 or segmentation.min() < 0 or segmentation.max() > 255:
        raise ValueError(f"{name}: GTcls.Segmentation must be a 2-D map of class ids, got shape {segmentation.shape}.")
    return segmentation.astype(np.uint8)


def _ids(data: bytes) -> list[str]:
    return data.decode().split()


def _require(archive: Archive, names: list[str], kind: str) -> None:
    """Refuse an archive whose lists name members it lacks (a cut download or the wrong archive)."""
    missing = [n for n in names if n not in archive]
    if missing:
        raise ValueError(
            f"{archive.what}: {len(missing)} {kind} listed by the archive's own image lists are missing from "
            f"{str(archive.path)!r}, e.g. {missing[0]!r}. The archive is incomplete; download it again."
        )


def _voc_label(out: Path, data: bytes, member: str) -> None:
    write_label(out, read_voc_label(data, member))


def _sbd_label(out: Path, data: bytes, member: str) -> None:
    write_label(out, read_sbd_label(data, member))


def prepare_pascal5i(voc: str | Path, sbd: str | Path, out: str | Path, *, progress: bool = True) -> PrepareSummary:
    """Build the PASCAL-5i tree ``OUT/VOCdevkit/VOC2012`` from the official archives.

    Args:
        voc: ``VOCtrainval_11-May-2012.tar``, or the folder it was extracted to.
        sbd: SBD's ``benchmark.tgz``, or the folder it was extracted to.
        out: the output directory (created).
        progress: show a progress bar.

    Returns:
        :class:`PrepareSummary` (images, labels from VOC, labels from SBD, ``train_aug`` ids).

    Raises:
        FileNotFoundError: an archive does not exist.
        ValueError: not the expected archive, a missing member, or a truncated or corrupt archive; nothing
            is written then.
        RuntimeError: scipy is not installed.
    """
    with (
        Archive(voc, "the VOC 2012 trainval archive (--voc)") as voc_archive,
        Archive(sbd, "the SBD archive (--sbd)") as sbd_archive,
    ):
        # 1. Index and check both archives before writing anything.
        v = voc_archive.root_of("ImageSets/Segmentation/val.txt")
        s = sbd_archive.root_of("dataset/train.txt") + "dataset/"
        lists = {
            name: _ids(voc_archive.read(f"{v}ImageSets/Segmentation/{name}.txt"))
            for name in ("train", "val", "trainval")
            if f"{v}ImageSets/Segmentation/{name}.txt" in voc_archive
        }
        if "train" not in lists:
            raise ValueError(f"{voc_archive.what}: no ImageSets/Segmentation/train.txt; not the VOC 2012 archive.")
        sbd_lists = {name: _ids(sbd_archive.read(f"{s}{name}.txt")) for name in ("train", "val")}
        voc_ids = sorted(set(lists["train"]) | set(lists["val"]))
        sbd_ids = sorted(set(sbd_lists["train"]) | set(sbd_lists["val"]))
        _require(voc_archive, [f"{v}SegmentationClass/{i}.png" for i in voc_ids], "labels")
        _require(voc_archive, [f"{v}JPEGImages/{i}.jpg" for i in voc_ids], "images")
        _require(sbd_archive, [f"{s}cls/{i}.mat" for i in sbd_ids], "labels")
        _require(sbd_archive, [f"{s}img/{i}.jpg" for i in sbd_ids], "images")
        from_sbd = sorted(set(sbd_ids) - set(voc_ids))

        # 2. Every output file and where it comes from.
        root = Path(out).expanduser() / "VOCdevkit" / "VOC2012"
        plan = WritePlan()
        for i in voc_ids:
            plan.add(
                root / "SegmentationClassAug" / f"{i}.png", voc_archive, f"{v}SegmentationClass/{i}.png", _voc_label
            )
        for i in from_sbd:
            plan.add(root / "SegmentationClassAug" / f"{i}.png", sbd_archive, f"{s}cls/{i}.mat", _sbd_label)
        for i in voc_ids + from_sbd:
            member = f"{v}JPEGImages/{i}.jpg"
            if member in voc_archive:
                plan.add(root / "JPEGImages" / f"{i}.jpg", voc_archive, member, copy_member)
            else:
                plan.add(root / "JPEGImages" / f"{i}.jpg", sbd_archive, f"{s}img/{i}.jpg", copy_member)

        # 3. Write what is missing, then the lists and the record (lists last: a tree with lists is complete).
        written, skipped = plan.run(progress, "prepare pascal5i")
    held_out = set(lists["val"])
    train_aug = sorted((set(lists["train"]) | set(sbd_ids)) - held_out)
    texts = {f"ImageSets/Segmentation/{name}.txt": "".join(f"{i}\n" for i in ids) for name, ids in lists.items()}
    texts["ImageSets/SegmentationAug/train_aug.txt"] = "".join(f"{i}\n" for i in train_aug)
    counts = {
        "images": len(voc_ids) + len(from_sbd),
        "labels from VOC": len(voc_ids),
        "labels from SBD": len(from_sbd),
        "train_aug ids": len(train_aug),
        "val ids": len(lists["val"]),
    }
    texts[RECORD] = json.dumps({"voc": Path(voc).name, "sbd": Path(sbd).name, "counts": counts}, indent=2) + "\n"
    more, same = write_texts(root, texts)
    return PrepareSummary(root, counts, written + more, skipped + same)
