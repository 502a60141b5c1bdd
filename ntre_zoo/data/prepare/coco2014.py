"""COCO-20i from the official COCO 2014 archives: ``train2014.zip``, ``val2014.zip`` and
``annotations_trainval2014.zip``.

Writes ``OUT/train2014/``, ``OUT/val2014/`` (every image the instance annotations list) and
``OUT/annotations/instances_{train,val}2014.json``, then builds the semantic label PNGs with the loader's own
code (:func:`ntre_zoo.data.coco20i.build_coco_labels`), so that ``--dataset coco20i --data-root OUT`` reads
the tree unchanged and never builds labels again. Every archive is checked before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..coco20i import LABEL_DIR, build_coco_labels
from .archives import Archive
from .tree import PrepareSummary, WritePlan, copy_member, write_texts

__all__ = ["prepare_coco20i"]

SPLITS = ("train", "val")
RECORD = "ntre_zoo_prepare.json"


def _listed_images(archive: Archive, split: str) -> tuple[str, list[str]]:
    """The member ``annotations/instances_{split}2014.json`` and the image file names it lists."""
    member = archive.root_of(f"annotations/instances_{split}2014.json") + f"annotations/instances_{split}2014.json"
    try:
        data = json.loads(archive.read(member))
        images = [str(info["file_name"]) for info in data["images"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{archive.what}: {member!r} is not a COCO instances file ({error}).") from error
    return member, images


def _files_under(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0


def _image_source(archives: Sequence[Archive], split: str, first: str) -> tuple[Archive, str]:
    """The images archive (and prefix) that holds ``{split}2014/first``."""
    for archive in archives:
        root = archive.find_root(f"{split}2014/{first}")
        if root is not None:
            return archive, f"{root}{split}2014/"
    raise ValueError(
        f"No images archive (--images) holds {split}2014/{first}; pass train2014.zip and val2014.zip "
        "(or the folders they were extracted to)."
    )


def prepare_coco20i(
    images: Sequence[str | Path], annotations: str | Path, out: str | Path, *, progress: bool = True
) -> PrepareSummary:
    """Build the COCO-20i tree ``OUT`` from the official COCO 2014 archives.

    Args:
        images: ``train2014.zip`` and ``val2014.zip`` (or their extracted folders), in any order.
        annotations: ``annotations_trainval2014.zip`` (or its extracted folder).
        out: the COCO root to write (created).
        progress: show progress bars.

    Returns:
        :class:`~ntre_zoo.data.prepare.tree.PrepareSummary` (images and labelled images per split).

    Raises:
        FileNotFoundError: an archive does not exist.
        ValueError: not the expected archives, a missing member, or a truncated or corrupt archive; nothing
            is written then.
        RuntimeError: pycocotools is not installed.
    """
    root = Path(out).expanduser()
    opened = [Archive(path, f"the COCO images archive (--images {Path(path).name})") for path in images]
    notes = Archive(annotations, "the COCO annotations archive (--annotations)")
    try:
        # 1. Every listed image must be in an images archive before anything is written.
        plan = WritePlan()
        listed: dict[str, int] = {}
        for split in SPLITS:
            member, names = _listed_images(notes, split)
            if not names:
                raise ValueError(f"{notes.what}: {member!r} lists no image.")
            archive, prefix = _image_source(opened, split, names[0])
            missing = [name for name in names if f"{prefix}{name}" not in archive]
            if missing:
                raise ValueError(
                    f"{archive.what}: {len(missing)} of the {len(names)} {split}2014 images the annotations list "
                    f"are missing, e.g. {missing[0]!r}. The archive is incomplete; download it again."
                )
            plan.add(root / "annotations" / f"instances_{split}2014.json", notes, member, copy_member)
            for name in names:
                plan.add(root / f"{split}2014" / name, archive, f"{prefix}{name}", copy_member)
            listed[split] = len(names)
        # 2. Images and annotation files, then the labels by the loader's code path.
        written, skipped = plan.run(progress, "prepare coco20i")
    finally:
        for archive in (*opened, notes):
            archive.close()
    counts: dict[str, int] = {}
    labels_before = _files_under(root / LABEL_DIR)
    for split in SPLITS:
        pairs, _ = build_coco_labels(root, split, progress=progress)
        counts[f"{split} images"] = listed[split]
        counts[f"{split} labelled images"] = len(pairs)
    written += _files_under(root / LABEL_DIR) - labels_before
    record = {"images": [Path(p).name for p in images], "annotations": Path(annotations).name, "counts": counts}
    more, same = write_texts(root, {RECORD: json.dumps(record, indent=2) + "\n"})
    return PrepareSummary(root, counts, written + more, skipped + same)
