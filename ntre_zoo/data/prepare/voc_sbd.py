"""PASCAL-5i from the two official archives: VOC 2012 trainval and SBD (``benchmark.tgz``).

Writes ``OUT/VOCdevkit/VOC2012/`` with ``JPEGImages/`` (every image that has a label), ``SegmentationClassAug/``
(single-channel PNGs of class ids: VOC's own label where VOC has one, its 255 boundary band kept; SBD's
``GTcls.Segmentation`` from ``dataset/cls/ID.mat`` for the others, as it is, without a boundary band),
``ImageSets/Segmentation/`` (VOC's lists, copied) and ``ImageSets/SegmentationAug/train_aug.txt`` (VOC train
and SBD train+val minus VOC val: 10,582 ids on the real archives). Both archives are indexed and checked
before anything is written (every id a plain file name); the tree is built beside ``OUT`` and moved in at the
end, so a bad member found half-way leaves ``OUT`` as it was, and a re-run skips the files already there.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import ArchiveError
from .archives import DEFAULT_MAX_MEMBER_BYTES, Archive, plain_name
from .members import copy_image, sbd_label, voc_label
from .tree import PrepareSummary, WritePlan, output_folder

__all__ = ["RECORD", "prepare_pascal5i"]

RECORD = "ntre_zoo_prepare.json"
TREE = "VOCdevkit/VOC2012/"


def _ids(archive: Archive, member: str) -> list[str]:
    """The ids of an image list member, one a line, each checked to be a plain file name."""
    where = f"{archive.what}: {str(archive.path)!r}, {member}"
    try:
        lines = archive.read(member).decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise archive.refuse(member, f"is not a UTF-8 list of image ids ({error}).") from error
    return [plain_name(line.strip(), f"{where}, line {n}") for n, line in enumerate(lines, 1) if line.strip()]


def _require(archive: Archive, names: list[str], kind: str) -> None:
    """Refuse an archive whose lists name members it lacks (a cut download or the wrong archive)."""
    missing = [n for n in names if n not in archive]
    if missing:
        raise ArchiveError(
            f"{archive.what}: {len(missing)} {kind} listed by the archive's own image lists are missing from "
            f"{str(archive.path)!r}, e.g. {missing[0]!r}. The archive is incomplete; download it again."
        )


def prepare_pascal5i(
    voc: str | Path,
    sbd: str | Path,
    out: str | Path,
    *,
    progress: bool = True,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> PrepareSummary:
    """Build the PASCAL-5i tree ``OUT/VOCdevkit/VOC2012`` from the official archives.

    Args:
        voc: ``VOCtrainval_11-May-2012.tar``, or the folder it was extracted to.
        sbd: SBD's ``benchmark.tgz``, or the folder it was extracted to.
        out: the output directory (created; files already there are kept, never overwritten).
        progress: show a progress bar.
        max_member_bytes: the most one member may expand to, and the most pixels a label or image may have
            (64 MiB; the largest real member is well under 1 MiB).

    Returns:
        :class:`PrepareSummary` (images, labels from VOC, labels from SBD, ``train_aug`` ids).

    Raises:
        FileNotFoundError: an archive does not exist.
        FileExistsError: ``out`` is a file, or holds a list that differs from the archive's.
        ArchiveError: not the expected archive, a missing, oversized, duplicate or malformed member, a label
            value that is not a PASCAL class id (0 to 20) or 255, an id that is not a plain file name, or a
            truncated or corrupt archive; ``out`` is left as it was.
        RuntimeError: scipy is not installed.
    """
    folder = output_folder(out)
    with (
        Archive(voc, "the VOC 2012 trainval archive (--voc)", max_member_bytes) as voc_archive,
        Archive(sbd, "the SBD archive (--sbd)", max_member_bytes) as sbd_archive,
    ):
        # 1. Index and check both archives before writing anything.
        v = voc_archive.root_of("ImageSets/Segmentation/val.txt")
        s = sbd_archive.root_of("dataset/train.txt") + "dataset/"
        lists = {
            name: _ids(voc_archive, f"{v}ImageSets/Segmentation/{name}.txt")
            for name in ("train", "val", "trainval")
            if f"{v}ImageSets/Segmentation/{name}.txt" in voc_archive
        }
        if "train" not in lists:
            raise ArchiveError(f"{voc_archive.what}: no ImageSets/Segmentation/train.txt; not the VOC 2012 archive.")
        sbd_lists = {name: _ids(sbd_archive, f"{s}{name}.txt") for name in ("train", "val")}
        voc_ids = sorted(set(lists["train"]) | set(lists["val"]))
        sbd_ids = sorted(set(sbd_lists["train"]) | set(sbd_lists["val"]))
        _require(voc_archive, [f"{v}SegmentationClass/{i}.png" for i in voc_ids], "labels")
        _require(voc_archive, [f"{v}JPEGImages/{i}.jpg" for i in voc_ids], "images")
        _require(sbd_archive, [f"{s}cls/{i}.mat" for i in sbd_ids], "labels")
        _require(sbd_archive, [f"{s}img/{i}.jpg" for i in sbd_ids], "images")
        from_sbd = sorted(set(sbd_ids) - set(voc_ids))

        # 2. Every output file and where it comes from (a label and its image must have one size).
        plan = WritePlan(folder)
        for i in voc_ids:
            plan.add(f"{TREE}SegmentationClassAug/{i}.png", voc_archive, f"{v}SegmentationClass/{i}.png", voc_label, i)
        for i in from_sbd:
            plan.add(f"{TREE}SegmentationClassAug/{i}.png", sbd_archive, f"{s}cls/{i}.mat", sbd_label, i)
        for i in voc_ids + from_sbd:
            member = f"{v}JPEGImages/{i}.jpg"
            source = (voc_archive, member) if member in voc_archive else (sbd_archive, f"{s}img/{i}.jpg")
            plan.add(f"{TREE}JPEGImages/{i}.jpg", *source, copy_image, i)

        # 3. The lists and the record, moved in last: a tree with lists is complete.
        held_out = set(lists["val"])
        train_aug = sorted((set(lists["train"]) | set(sbd_ids)) - held_out)
        texts = {f"ImageSets/Segmentation/{name}.txt": ids for name, ids in lists.items()}
        texts["ImageSets/SegmentationAug/train_aug.txt"] = train_aug
        for name, ids in texts.items():
            plan.add_file(f"{TREE}{name}", "".join(f"{i}\n" for i in ids).encode())
        counts = {
            "images": len(voc_ids) + len(from_sbd),
            "labels from VOC": len(voc_ids),
            "labels from SBD": len(from_sbd),
            "train_aug ids": len(train_aug),
            "val ids": len(lists["val"]),
        }
        record = {"voc": Path(voc).name, "sbd": Path(sbd).name, "counts": counts}
        plan.add_file(f"{TREE}{RECORD}", (json.dumps(record, indent=2) + "\n").encode(), ours=True)

        # 4. Write into the stage, check, then move into OUT.
        plan.run(progress, "prepare pascal5i")
    return PrepareSummary(folder / TREE.rstrip("/"), counts, plan.written, plan.skipped)
