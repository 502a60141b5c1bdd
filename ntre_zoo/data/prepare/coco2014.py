"""COCO-20i from the official COCO 2014 archives: ``train2014.zip``, ``val2014.zip`` and
``annotations_trainval2014.zip``.

Writes ``OUT/train2014/``, ``OUT/val2014/`` (every image the instance annotations list) and
``OUT/annotations/instances_{train,val}2014.json``, then builds the semantic label PNGs with the loader's own
code (:func:`ntre_zoo.data.coco20i.build_coco_labels`), so that ``--dataset coco20i --data-root OUT`` reads
the tree unchanged and never builds labels again. Every archive is checked before anything is written (every
``file_name`` a plain ``.jpg``/``.jpeg``/``.png`` name, every category id one of COCO 2014's 80 and every
annotation's ``category_id`` one of its file's categories); the tree is built beside ``OUT`` and moved in at the
end. Polygons reaching outside their image are clipped to it, as pycocotools draws them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ...errors import ArchiveError
from ..coco20i import build_coco_labels, coco_label_index
from .archives import DEFAULT_MAX_MEMBER_BYTES, Archive, plain_name
from .members import copy_image
from .tree import PrepareSummary, WritePlan, output_folder

__all__ = ["ANNOTATION_FACTOR", "prepare_coco20i"]

SPLITS = ("train", "val")
RECORD = "ntre_zoo_prepare.json"
#: An annotation file may be this many times the per-member cap (1 GiB by default): COCO 2014's
#: ``instances_train2014.json`` is 332 MB, and it is read whole to list the images.
ANNOTATION_FACTOR = 16
_SUFFIXES = (".jpg", ".jpeg", ".png")
#: COCO 2014's 80 category ids: 1 to 90, 10 of them unused.
COCO_CATEGORY_IDS = frozenset(range(1, 91)) - {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def _check_categories(where: str, categories: list[object], labels: list[object]) -> None:
    """Refuse a category id that is not one of COCO's 80, and an annotation's ``category_id`` that is not an
    integer id of the file's ``categories`` (a float or ``True`` would match an id in a dict lookup)."""
    for k, identifier in enumerate(categories):
        if type(identifier) is not int or identifier not in COCO_CATEGORY_IDS:
            raise ArchiveError(
                f"{where}, categories[{k}].id: {identifier!r} is not one of COCO 2014's 80 category ids (integers "
                "1 to 90 with 10 gaps). The archive was altered; use the official download."
            )
    known = set(categories)
    for k, category in enumerate(labels):
        if type(category) is not int or category not in known:
            raise ArchiveError(
                f"{where}, annotations[{k}].category_id: {category!r} is not one of the {len(known)} integer ids "
                "of the file's categories. The archive was altered; use the official download."
            )


def _listed_images(archive: Archive, split: str) -> tuple[str, bytes, list[tuple[str, tuple[int, int]]]]:
    """The member ``annotations/instances_{split}2014.json``, its bytes, and the file name and ``(width,
    height)`` of every image it lists, each name a plain image file name, its categories checked."""
    member = archive.root_of(f"annotations/instances_{split}2014.json") + f"annotations/instances_{split}2014.json"
    data = archive.read(member, ANNOTATION_FACTOR * archive.max_member_bytes)
    try:
        document = json.loads(data)
        images = [(info["file_name"], (info["width"], info["height"])) for info in document["images"]]
        categories = [category["id"] for category in document["categories"]]
        labels = [annotation["category_id"] for annotation in document["annotations"]]
    except (ValueError, KeyError, TypeError) as error:
        raise archive.refuse(member, f"is not a COCO instances file ({type(error).__name__}: {error}).") from error
    where = f"{archive.what}: {str(archive.path)!r}, {member}"
    for k, (name, (width, height)) in enumerate(images):
        field = f"{where}, images[{k}].file_name"
        if not isinstance(name, str) or Path(plain_name(name, field)).suffix.lower() not in _SUFFIXES:
            raise ArchiveError(f"{field}: {name!r} is not a COCO image name (a .jpg, .jpeg or .png file).")
        sized = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height))
        if not sized or width * height > archive.max_member_bytes:
            raise ArchiveError(
                f"{where}, images[{k}]: width {width!r} x height {height!r} is not an image size within the "
                f"{archive.max_member_bytes:,}-pixel cap (raise it with --max-member-mib if it is genuine)."
            )
    _check_categories(where, categories, labels)
    return member, data, images


def _image_source(archives: Sequence[Archive], split: str, first: str) -> tuple[Archive, str]:
    """The images archive (and prefix) that holds ``{split}2014/first``."""
    for archive in archives:
        root = archive.find_root(f"{split}2014/{first}")
        if root is not None:
            return archive, f"{root}{split}2014/"
    raise ArchiveError(
        f"No images archive (--images) holds {split}2014/{first}; pass train2014.zip and val2014.zip "
        "(or the folders they were extracted to)."
    )


def prepare_coco20i(
    images: Sequence[str | Path],
    annotations: str | Path,
    out: str | Path,
    *,
    progress: bool = True,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> PrepareSummary:
    """Build the COCO-20i tree ``OUT`` from the official COCO 2014 archives.

    Args:
        images: ``train2014.zip`` and ``val2014.zip`` (or their extracted folders), in any order.
        annotations: ``annotations_trainval2014.zip`` (or its extracted folder).
        out: the COCO root to write (created; files already there are kept, never overwritten).
        progress: show progress bars.
        max_member_bytes: the most one image may expand to, and the most pixels it may have (64 MiB); an
            annotation file may have :data:`ANNOTATION_FACTOR` times as many bytes.

    Returns:
        :class:`~ntre_zoo.data.prepare.tree.PrepareSummary` (images and labelled images per split).

    Raises:
        FileNotFoundError: an archive does not exist.
        FileExistsError: ``out`` is a file, or holds an annotation file that differs from the archive's.
        ArchiveError: not the expected archives, a missing, oversized, duplicate or malformed member, a
            ``file_name`` that is not a plain image name, a category id that is not one of COCO's 80 or an
            annotation's ``category_id`` that is not one of its file's, or a truncated or corrupt archive;
            ``out`` is left as it was.
        RuntimeError: pycocotools is not installed.
    """
    folder = output_folder(out)
    opened = [Archive(p, f"the COCO images archive (--images {Path(p).name})", max_member_bytes) for p in images]
    notes = Archive(annotations, "the COCO annotations archive (--annotations)", max_member_bytes)
    try:
        # 1. Every listed image must be in an images archive, with a safe name, before anything is written.
        plan = WritePlan(folder)
        listed: dict[str, int] = {}
        members: dict[str, str] = {}
        for split in SPLITS:
            member, data, names = _listed_images(notes, split)
            if not names:
                raise notes.refuse(member, "lists no image.")
            archive, prefix = _image_source(opened, split, names[0][0])
            missing = [name for name, _ in names if f"{prefix}{name}" not in archive]
            if missing:
                raise ArchiveError(
                    f"{archive.what}: {len(missing)} of the {len(names)} {split}2014 images the annotations list "
                    f"are missing, e.g. {missing[0]!r}. The archive is incomplete; download it again."
                )
            plan.add_file(f"annotations/instances_{split}2014.json", data)
            for name, size in names:
                plan.add(f"{split}2014/{name}", archive, f"{prefix}{name}", copy_image, f"{split}/{name}")
                plan.expect(f"{split}/{name}", size, f"its entry in {member}")
            listed[split], members[split] = len(names), member
        # 2. Images and annotation files, then the labels by the loader's code path, all beside OUT first.
        counts: dict[str, int] = {}
        with plan.staged(progress, "prepare coco20i") as stage:
            for split in SPLITS:
                index = coco_label_index(stage, split).relative_to(stage).as_posix()
                built = folder if (folder / index).is_file() else stage
                try:
                    pairs, _ = build_coco_labels(built, split, progress=progress)
                except (KeyError, TypeError, IndexError, ValueError) as error:
                    raise notes.refuse(
                        members[split], f"has an annotation pycocotools cannot read ({error})."
                    ) from error
                plan.last.append(index)
                counts[f"{split} images"] = listed[split]
                counts[f"{split} labelled images"] = len(pairs)
            record = {"images": [Path(p).name for p in images], "annotations": Path(annotations).name, "counts": counts}
            plan.add_file(RECORD, (json.dumps(record, indent=2) + "\n").encode(), ours=True)
    finally:
        for archive in (*opened, notes):
            archive.close()
    return PrepareSummary(folder, counts, plan.written, plan.skipped)
