"""``ntre-zoo prepare``: small archives in the official formats (VOC 2012 tar, SBD tgz, COCO 2014 zips),
built here, turned into the trees the loaders read; every label pixel is checked against its source."""

from __future__ import annotations

import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import jpeg_bytes, palette_png, sbd_mat, write_tar
from PIL import Image

from ntre_zoo.cli import main
from ntre_zoo.data import pascal5i_source
from ntre_zoo.data.index import read_label
from ntre_zoo.data.prepare.coco2014 import prepare_coco20i
from ntre_zoo.data.prepare.voc_sbd import prepare_pascal5i

pytest.importorskip("scipy.io")

H, W = 48, 64
VOC_TRAIN = ["2007_000001", "2007_000002"]
VOC_VAL = ["2007_000003"]
SBD_TRAIN = ["2007_000002", "2008_000010", "2008_000011"]  # 2007_000002 has a VOC label too: VOC's wins
SBD_VAL = ["2007_000003", "2008_000012"]  # 2007_000003 is VOC val: VOC's label, and never in train_aug
NOT_IN_VOC_JPEGS = "2008_000012"  # SBD has this image but the VOC archive does not: taken from SBD


def _label(rng: np.random.Generator, boundary: bool) -> np.ndarray:
    label = rng.integers(0, 21, (H, W), dtype=np.uint8)
    label[:, : W // 2] = rng.integers(1, 21)
    if boundary:
        label[H // 2, :] = 255
    return label


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The two archives, and what each id's label and image must be."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("archives")
    voc, sbd, expected_labels, expected_images = {}, {}, {}, {}
    v, s = "VOCdevkit/VOC2012/", "benchmark_RELEASE/dataset/"
    for name, ids in (("train", VOC_TRAIN), ("val", VOC_VAL), ("trainval", VOC_TRAIN + VOC_VAL)):
        voc[f"{v}ImageSets/Segmentation/{name}.txt"] = "".join(f"{i}\n" for i in ids).encode()
    for i in sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL)):
        jpeg = jpeg_bytes(rng, (H, W))
        if i != NOT_IN_VOC_JPEGS:
            voc[f"{v}JPEGImages/{i}.jpg"] = jpeg
        sbd[f"{s}img/{i}.jpg"] = jpeg
        expected_images[i] = jpeg
    for i in VOC_TRAIN + VOC_VAL:
        label = _label(rng, boundary=True)
        voc[f"{v}SegmentationClass/{i}.png"] = palette_png(label)
        expected_labels[i] = label
    for i in SBD_TRAIN + SBD_VAL:
        label = _label(rng, boundary=False)
        sbd[f"{s}cls/{i}.mat"] = sbd_mat(label, compressed=False)
        expected_labels.setdefault(i, label)
    voc[f"{v}JPEGImages/2012_009999.jpg"] = jpeg_bytes(rng, (H, W))  # an image with no label: not copied
    for name, ids in (("train", SBD_TRAIN), ("val", SBD_VAL)):
        sbd[f"{s}{name}.txt"] = "".join(f"{i}\n" for i in ids).encode()
    return {
        "voc": write_tar(folder / "VOCtrainval_11-May-2012.tar", voc, "w"),
        "sbd": write_tar(folder / "benchmark.tgz", sbd, "w:gz"),
        "labels": expected_labels,
        "images": expected_images,
    }


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_prepare_pascal5i_builds_the_tree_pixel_for_pixel_and_a_rerun_writes_nothing(sources, tmp_path, capsys):
    out = tmp_path / "out"
    summary = prepare_pascal5i(sources["voc"], sources["sbd"], out, progress=False)
    voc = out / "VOCdevkit" / "VOC2012"
    assert summary.root == voc
    assert summary.counts == {
        "images": 6,
        "labels from VOC": 3,
        "labels from SBD": 3,
        "train_aug ids": 5,
        "val ids": 1,
    }
    assert sorted(p.stem for p in (voc / "SegmentationClassAug").iterdir()) == sorted(sources["labels"])
    for i, label in sources["labels"].items():
        written = read_label(voc / "SegmentationClassAug" / f"{i}.png")
        np.testing.assert_array_equal(written, label, err_msg=i)
        with Image.open(voc / "SegmentationClassAug" / f"{i}.png") as image:
            assert image.mode == "L"
    for i, jpeg in sources["images"].items():
        assert (voc / "JPEGImages" / f"{i}.jpg").read_bytes() == jpeg
    assert not (voc / "JPEGImages" / "2012_009999.jpg").exists()
    assert (voc / "ImageSets" / "Segmentation" / "val.txt").read_text() == "2007_000003\n"
    train_aug = (voc / "ImageSets" / "SegmentationAug" / "train_aug.txt").read_text().split()
    assert train_aug == sorted(set(VOC_TRAIN + SBD_TRAIN + SBD_VAL) - set(VOC_VAL))
    # 255 is VOC's boundary band; SBD labels get none.
    assert (read_label(voc / "SegmentationClassAug" / "2007_000001.png") == 255).any()
    assert not (read_label(voc / "SegmentationClassAug" / "2008_000010.png") == 255).any()
    # The loader reads the tree unchanged.
    assert len(pascal5i_source(voc, "train").labels) == 5 and len(pascal5i_source(out, "val").labels) == 1

    before = _snapshot(out)
    command = ["prepare", "pascal5i", "--voc", str(sources["voc"]), "--sbd", str(sources["sbd"]), "-o", str(out)]
    assert main([*command, "--no-progress"]) == 0
    assert "0 files written" in capsys.readouterr().out
    assert _snapshot(out) == before


def test_prepare_pascal5i_reads_extracted_folders(sources, tmp_path):
    for name in ("voc", "sbd"):
        with tarfile.open(sources[name]) as tar:
            tar.extractall(tmp_path / name, filter="data")
    summary = prepare_pascal5i(tmp_path / "voc", tmp_path / "sbd", tmp_path / "out", progress=False)
    assert summary.counts["images"] == 6 and summary.written == 6 + 6 + 5  # images, labels, 4 lists + record
    voc = tmp_path / "out" / "VOCdevkit" / "VOC2012"
    np.testing.assert_array_equal(
        read_label(voc / "SegmentationClassAug" / "2008_000011.png"), sources["labels"]["2008_000011"]
    )


@pytest.mark.parametrize("which", ["voc", "sbd"])
def test_a_truncated_archive_is_refused_and_nothing_is_written(sources, tmp_path, which):
    data = sources[which].read_bytes()
    cut = tmp_path / sources[which].name
    cut.write_bytes(data[: len(data) // 2])
    archives = {**{k: sources[k] for k in ("voc", "sbd")}, which: cut}
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="truncated or corrupt"):
        prepare_pascal5i(archives["voc"], archives["sbd"], out, progress=False)
    assert not out.exists()


def test_a_truncated_download_cut_between_members_is_refused(sources, tmp_path):
    data = sources["voc"].read_bytes()
    with tarfile.open(sources["voc"]) as tar:
        boundary = tar.getmembers()[5].offset  # the file ends cleanly after member 4
    cut = tmp_path / "voc.tar"
    cut.write_bytes(data[:boundary])
    with pytest.raises(ValueError, match="end-of-archive"):
        prepare_pascal5i(cut, sources["sbd"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_wrong_or_incomplete_archives_are_refused(sources, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="not the expected archive"):
        prepare_pascal5i(sources["sbd"], sources["sbd"], out, progress=False)
    with tarfile.open(sources["sbd"]) as tar:
        members = {
            m.name: tar.extractfile(m).read() for m in tar.getmembers() if not m.name.endswith("2008_000011.mat")
        }
    incomplete = write_tar(tmp_path / "benchmark.tgz", members, "w:gz")
    with pytest.raises(ValueError, match=r"1 labels listed .* missing .*2008_000011\.mat"):
        prepare_pascal5i(sources["voc"], incomplete, out, progress=False)
    (tmp_path / "notes.txt").write_text("not an archive")
    with pytest.raises(ValueError, match="neither a tar/tgz/zip"):
        prepare_pascal5i(tmp_path / "notes.txt", sources["sbd"], out, progress=False)
    with pytest.raises(FileNotFoundError, match="--voc"):
        prepare_pascal5i(tmp_path / "missing.tar", sources["sbd"], out, progress=False)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------- COCO

#: Category ids with gaps, as in COCO; contiguous ids are their rank: 1 -> 1, 3 -> 2, 18 -> 3, 90 -> 4.
CATEGORIES = {1: "person", 3: "car", 18: "dog", 90: "toothbrush"}


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


@pytest.fixture(scope="module")
def coco_sources(tmp_path_factory):
    """train2014.zip, val2014.zip and annotations_trainval2014.zip, and the label each image must get."""
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(1)
    folder = tmp_path_factory.mktemp("coco")
    expected, notes = {}, {}
    ids = sorted(CATEGORIES)
    for split in ("train", "val"):
        images, annotations, members = [], [], {}
        for n in range(4):
            image_id = 100 * (split == "val") + n + 1
            name = f"COCO_{split}2014_{image_id:012d}.jpg"
            members[f"{split}2014/{name}"] = jpeg_bytes(rng, (H, W))
            images.append({"id": image_id, "file_name": name, "height": H, "width": W})
            if n == 3:  # an image without annotations: copied, but it gets no label
                continue
            big, small = np.zeros((H, W), bool), np.zeros((H, W), bool)
            big[4:40, 4:50] = True
            small[20:30, 30:60] = True  # overlaps the big one: painted after it, so it stays on top
            label = np.zeros((H, W), np.uint8)
            for mask, category, crowd in ((big, ids[n], 0), (small, ids[n + 1], 1)):
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": category,
                        "segmentation": _rle(mask),
                        "area": float(mask.sum()),
                        "bbox": [0.0, 0.0, 1.0, 1.0],
                        "iscrowd": crowd,
                    }
                )
                label[mask] = ids.index(category) + 1
            expected[name] = label
        with zipfile.ZipFile(folder / f"{split}2014.zip", "w") as archive:
            for member, data in members.items():
                archive.writestr(member, data)
        categories = [{"id": c, "name": n, "supercategory": "x"} for c, n in CATEGORIES.items()]
        notes[f"annotations/instances_{split}2014.json"] = json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}
        )
    with zipfile.ZipFile(folder / "annotations_trainval2014.zip", "w") as archive:
        archive.writestr("annotations/captions_train2014.json", "{}")
        for member, text in notes.items():
            archive.writestr(member, text)
    return {
        "images": [folder / "val2014.zip", folder / "train2014.zip"],
        "annotations": folder / "annotations_trainval2014.zip",
        "labels": expected,
    }


def test_prepare_coco20i_builds_images_and_labels_once(coco_sources, tmp_path, monkeypatch):
    from ntre_zoo.data import coco20i

    out = tmp_path / "coco"
    summary = prepare_coco20i(coco_sources["images"], coco_sources["annotations"], out, progress=False)
    assert summary.counts == {"train images": 4, "train labelled images": 3, "val images": 4, "val labelled images": 3}
    for split in ("train", "val"):
        with zipfile.ZipFile(coco_sources["images"][split == "train"]) as archive:
            for member in archive.namelist():
                assert (out / member).read_bytes() == archive.read(member)
        with zipfile.ZipFile(coco_sources["annotations"]) as archive:
            name = f"annotations/instances_{split}2014.json"
            assert (out / name).read_bytes() == archive.read(name)
    # The loader reads the prepared tree without parsing the annotations again (no pycocotools needed).
    monkeypatch.setattr(coco20i, "_load_coco", lambda path: pytest.fail("labels were built twice"))
    checked = 0
    for split in ("train", "val"):
        source = coco20i.coco20i_source(out, split, progress=False)
        assert dict(source.class_names) == {1: "person", 2: "car", 3: "dog", 4: "toothbrush"}
        for image, label in zip(source.images, source.labels, strict=True):
            np.testing.assert_array_equal(read_label(label), coco_sources["labels"][image.name], err_msg=image.name)
            checked += 1
    assert checked == 6
    before = _snapshot(out)
    again = prepare_coco20i(coco_sources["images"], coco_sources["annotations"], out, progress=False)
    assert again.written == 0 and _snapshot(out) == before


def test_prepare_coco20i_refuses_a_truncated_zip_and_missing_images(coco_sources, tmp_path):
    data = coco_sources["images"][0].read_bytes()
    cut = tmp_path / "val2014.zip"
    cut.write_bytes(data[: len(data) - 40])
    out = tmp_path / "coco"
    with pytest.raises(ValueError, match="truncated or corrupt"):
        prepare_coco20i([cut, coco_sources["images"][1]], coco_sources["annotations"], out, progress=False)
    with pytest.raises(ValueError, match=r"No images archive .* val2014/COCO_val2014"):
        prepare_coco20i(coco_sources["images"][1:], coco_sources["annotations"], out, progress=False)
    with zipfile.ZipFile(coco_sources["images"][0]) as archive, zipfile.ZipFile(cut, "w") as short:
        for member in archive.namelist()[:-1]:
            short.writestr(member, archive.read(member))
    with pytest.raises(ValueError, match="1 of the 4 val2014 images"):
        prepare_coco20i([cut, coco_sources["images"][1]], coco_sources["annotations"], out, progress=False)
    assert not out.exists()


def test_prepare_cli_reports_a_clear_error(tmp_path, capsys):
    images, notes = str(tmp_path / "train2014.zip"), str(tmp_path / "a.zip")
    code = main(["prepare", "coco20i", "--images", images, "--annotations", notes, "-o", str(tmp_path / "o")])
    assert code == 1
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_atomic_writes_leave_no_temporary_files(sources, tmp_path):
    prepare_pascal5i(sources["voc"], sources["sbd"], tmp_path / "out", progress=False)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert os.listdir(tmp_path / "out") == ["VOCdevkit"]
