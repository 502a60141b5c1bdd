"""``ntre-zoo prepare`` on archives made by someone else: names that climb out of ``--out``, members that
expand without end, members that are not what their names say, and a run that fails half-way. Whatever the
archive holds, nothing is written outside ``--out``, nothing already in ``--out`` changes, and a failure is an
:class:`~ntre_zoo.errors.ArchiveError` (a ``ValueError``) naming the archive and the member."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import (
    SBD_ROOT,
    VOC_ROOT,
    grey_png,
    jpeg_bytes,
    palette_png,
    pascal_members,
    sbd_mat,
    write_tar,
    write_zip,
)
from PIL import Image

from ntre_zoo.cli import main
from ntre_zoo.data.index import read_label
from ntre_zoo.data.prepare.coco2014 import prepare_coco20i
from ntre_zoo.data.prepare.voc_sbd import prepare_pascal5i
from ntre_zoo.errors import ArchiveError

pytest.importorskip("scipy.io")

MiB = 2**20
VOC_TRAIN = f"{VOC_ROOT}ImageSets/Segmentation/train.txt"
SBD_TRAIN = f"{SBD_ROOT}train.txt"


def _archives(folder: Path, voc: dict | list, sbd: dict | list) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return write_tar(folder / "VOCtrainval.tar", voc), write_tar(folder / "benchmark.tgz", sbd, "w:gz")


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` (links included, not followed) -> (content, mtime)."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_symlink() or path.is_file():
            found[str(path)] = (path.read_bytes() if path.is_file() else b"->link", path.lstat().st_mtime_ns)
    return found


# ------------------------------------------------------------------------------------------ names in lists

HOSTILE_IDS = ["../../../../escaped", "{tmp}/abs/escaped", "a/b", "..", "a\\b", ".hidden", "c:x", "nul\x00x"]


@pytest.mark.parametrize("which", ["voc", "sbd"])
@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_an_id_that_is_not_a_plain_file_name_is_refused_naming_the_list_and_line(tmp_path, which, bad):
    bad = bad.format(tmp=tmp_path)
    voc, sbd = pascal_members()
    label = np.zeros((48, 64), np.uint8)
    if which == "voc":  # with members that match, so that the id alone decides
        voc[VOC_TRAIN] = f"2007_000001\n{bad}\n".encode()
        voc[f"{VOC_ROOT}JPEGImages/{bad}.jpg"] = voc[f"{VOC_ROOT}JPEGImages/2007_000001.jpg"]
        voc[f"{VOC_ROOT}SegmentationClass/{bad}.png"] = palette_png(label)
    else:
        sbd[SBD_TRAIN] = f"2008_000001\n{bad}\n".encode()
        sbd[f"{SBD_ROOT}img/{bad}.jpg"] = sbd[f"{SBD_ROOT}img/2008_000001.jpg"]
        sbd[f"{SBD_ROOT}cls/{bad}.mat"] = sbd_mat(label)
    archives = _archives(tmp_path / "archives", voc, sbd)
    out = tmp_path / "a" / "b" / "out"
    listed = "ImageSets/Segmentation/train.txt" if which == "voc" else "dataset/train.txt"
    with pytest.raises(ArchiveError, match=rf"{listed}.* line 2: .*not a plain file name"):
        prepare_pascal5i(*archives, out, progress=False)
    assert set(_files(tmp_path)) == {str(a) for a in archives}


def _coco(
    folder: Path,
    train_names: list[str],
    members: dict[str, bytes] | None = None,
    annotations: list[dict] | None = None,
    categories: list[dict] | None = None,
    sizes: dict[int, tuple[object, object]] | None = None,
) -> tuple[list[Path], Path]:
    """COCO 2014 zips whose train annotations list ``train_names`` (each with a JPEG member unless given), with
    ``annotations`` (none by default), ``categories`` (person, id 1, by default) and the ``(width, height)`` that
    ``sizes`` declares for some train images (64 x 48, the members' size, by default)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    notes, zips = {}, []
    for split, names in (("train", train_names), ("val", ["COCO_val2014_000000000001.jpg"])):
        images = [{"id": k + 1, "file_name": n, "height": 48, "width": 64} for k, n in enumerate(names)]
        train = split == "train"
        for k, (width, height) in (sizes or {}).items() if train else ():
            images[k].update(width=width, height=height)
        notes[f"annotations/instances_{split}2014.json"] = json.dumps(
            {
                "images": images,
                "annotations": (annotations or []) if train else [],
                "categories": (categories or [{"id": 1, "name": "person"}]) if train else [{"id": 1, "name": "p"}],
            }
        ).encode()
        content = {f"{split}2014/{n}": jpeg_bytes(rng) for n in names}
        content.update((members or {}) if split == "train" else {})
        zips.append(write_zip(folder / f"{split}2014.zip", content))
    return zips, write_zip(folder / "annotations_trainval2014.zip", notes)


@pytest.mark.parametrize("bad", ["../../escaped.jpg", "{tmp}/abs/evil.sh", "sub/x.jpg", "evil.sh", "x.JPG.exe"])
def test_a_coco_file_name_that_is_not_a_plain_image_name_is_refused(tmp_path, bad):
    bad = bad.format(tmp=tmp_path)
    images, notes = _coco(tmp_path / "archives", ["COCO_train2014_000000000001.jpg", bad])
    out = tmp_path / "a" / "out"
    with pytest.raises(ArchiveError, match=r"instances_train2014\.json.*images\[1\]\.file_name"):
        prepare_coco20i(images, notes, out, progress=False)
    assert set(_files(tmp_path)) == {str(p) for p in (*images, notes)}


def test_coco_image_whose_size_differs_from_its_annotation_is_refused(tmp_path):
    name = "COCO_train2014_000000000002.jpg"
    small = {f"train2014/{name}": jpeg_bytes(np.random.default_rng(1), (40, 64))}
    images, notes = _coco(tmp_path / "archives", ["COCO_train2014_000000000001.jpg", name], small)
    with pytest.raises(ArchiveError, match=rf"train2014/{name}.* 64x40 .* 64x48"):
        prepare_coco20i(images, notes, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", [(0, 48), (64, 0), (-64, 48), (64.0, 48), ("64", 48), (True, 48)])
def test_a_coco_image_size_that_is_not_a_positive_integer_is_refused(tmp_path, size):
    images, notes = _coco(tmp_path / "archives", ["COCO_train2014_000000000001.jpg"], sizes={0: size})
    with pytest.raises(ArchiveError, match=r"images\[0\]: width .* is not an image size within the"):
        prepare_coco20i(images, notes, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_declared_coco_image_size_at_the_pixel_cap_passes_and_one_pixel_over_is_refused(tmp_path):
    name, cap = "COCO_train2014_000000000001.jpg", 64 * 1000
    images, notes = _coco(tmp_path / "at", [name], sizes={0: (64, 1000)})  # exactly the cap: read on ...
    with pytest.raises(ArchiveError, match=r" 64x48 .* 64x1000"):  # ... to the member, which is 64 x 48
        prepare_coco20i(images, notes, tmp_path / "out", progress=False, max_member_bytes=cap)
    images, notes = _coco(tmp_path / "over", [name], sizes={0: (64, 1001)})
    with pytest.raises(ArchiveError, match=r"width 64 x height 1001 is not an image size within the 64,000-pixel"):
        prepare_coco20i(images, notes, tmp_path / "out", progress=False, max_member_bytes=cap)


# ------------------------------------------------------------------------------------- decompression bombs


def test_a_member_over_the_default_cap_is_refused_before_it_is_read(tmp_path):
    voc, sbd = pascal_members()
    bomb = f"{VOC_ROOT}SegmentationClass/2007_000001.png"
    voc[bomb] = bytes(64 * MiB + 1)  # compresses to about 64 KiB
    archives = _archives(tmp_path / "archives", {}, sbd)
    write_tar(archives[0], voc, "w:gz")
    with pytest.raises(ArchiveError, match=rf"VOCtrainval\.tar.*{bomb}.* 64 MiB.*--max-member-mib"):
        prepare_pascal5i(*archives, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_the_cap_is_a_keyword_and_a_cli_option(tmp_path, capsys):
    voc, sbd = pascal_members()
    sbd[f"{SBD_ROOT}img/2008_000001.jpg"] += bytes(2 * MiB)  # a JPEG ends at its end marker: still readable
    archives = _archives(tmp_path / "archives", voc, sbd)
    out = tmp_path / "out"
    with pytest.raises(ArchiveError, match=r"benchmark\.tgz.*img/2008_000001\.jpg.* 1 MiB"):
        prepare_pascal5i(*archives, out, progress=False, max_member_bytes=MiB)
    command = ["prepare", "pascal5i", "--voc", str(archives[0]), "--sbd", str(archives[1]), "-o", str(out)]
    assert main([*command, "--no-progress", "--max-member-mib", "1"]) == 1
    assert "--max-member-mib" in capsys.readouterr().err and not out.exists()
    assert main([*command, "--no-progress", "--max-member-mib", "3"]) == 0
    for wrong in ("0", "-1", "inf", "nan", "lots"):
        with pytest.raises(SystemExit):
            main([*command, "--max-member-mib", wrong])


def test_a_small_label_claiming_huge_dimensions_is_refused_not_decoded(tmp_path):
    voc, sbd = pascal_members()
    member = f"{VOC_ROOT}SegmentationClass/2007_000002.png"
    voc[member] = grey_png(100_000, 100_000, zlib.compress(b"\0" * 64))
    with pytest.raises(ArchiveError, match=rf"{member}.* 100000x100000 .*pixels"):
        prepare_pascal5i(*_archives(tmp_path, voc, sbd), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_mat_label_that_inflates_past_the_cap_is_refused(tmp_path):
    voc, sbd = pascal_members()
    member = f"{SBD_ROOT}cls/2008_000001.mat"
    sbd[member] = sbd_mat(np.zeros((2048, 2048), np.uint8))  # 4 MiB of class ids in about 8 KiB
    with pytest.raises(ArchiveError, match=rf"{member}.*expands to more than 1 MiB"):
        prepare_pascal5i(*_archives(tmp_path, voc, sbd), tmp_path / "out", progress=False, max_member_bytes=MiB)


# ------------------------------------------------------------------------------- members that are not right


def _grey_jpeg() -> bytes:
    return jpeg_bytes(np.random.default_rng(2), grey=True)


def _truncated_mat() -> bytes:
    data = sbd_mat(np.ones((48, 64), np.uint8), compressed=False)
    return data[: len(data) // 2]


def _v73_mat() -> bytes:
    """A MATLAB 5 header whose version word says 7.3 (HDF5), which scipy's loadmat cannot read."""
    data = bytearray(sbd_mat(np.ones((48, 64), np.uint8)))
    data[124:126] = (0x0200).to_bytes(2, "little")
    return bytes(data)


def _short_label() -> bytes:
    return palette_png(np.ones((40, 64), np.uint8))


def _narrow_mat() -> bytes:
    return sbd_mat(np.ones((48, 60), np.uint8))


BAD_MEMBERS = {
    "label not an image": ("voc", f"{VOC_ROOT}SegmentationClass/2007_000001.png", lambda: b"junk", "not a PNG"),
    "grey JPEG as label": ("voc", f"{VOC_ROOT}SegmentationClass/2007_000001.png", _grey_jpeg, "JPEG, not a PNG"),
    "image not an image": ("voc", f"{VOC_ROOT}JPEGImages/2007_000002.jpg", lambda: b"\xff\xd8junk", "not a JPEG"),
    "junk .mat": ("sbd", f"{SBD_ROOT}cls/2008_000001.mat", lambda: b"junk" * 40, "not a MATLAB 5"),
    "truncated .mat": ("sbd", f"{SBD_ROOT}cls/2008_000001.mat", _truncated_mat, "truncated"),
    "MATLAB 7.3 .mat": ("sbd", f"{SBD_ROOT}cls/2008_000001.mat", _v73_mat, "header version 0x0200, expected 0x0100"),
    "label size": ("voc", f"{VOC_ROOT}SegmentationClass/2007_000001.png", _short_label, "64x40.*64x48"),
    ".mat size": ("sbd", f"{SBD_ROOT}cls/2008_000001.mat", _narrow_mat, "60x48.*64x48"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_MEMBERS))
def test_a_member_that_is_not_what_its_name_says_is_refused_naming_archive_and_member(tmp_path, case):
    which, member, content, reason = BAD_MEMBERS[case]
    voc, sbd = pascal_members()
    {"voc": voc, "sbd": sbd}[which][member] = content()
    archives = _archives(tmp_path / "archives", voc, sbd)
    archive = archives[which == "sbd"].name
    with pytest.raises(ArchiveError, match=rf"{archive}.*{member}.*{reason}"):
        prepare_pascal5i(*archives, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_duplicate_member_is_refused_not_silently_chosen(tmp_path, kind):
    voc, sbd = pascal_members()
    member = f"{VOC_ROOT}SegmentationClass/2007_000001.png"
    items = [*voc.items(), (member, palette_png(np.ones((48, 64), np.uint8)))]
    if kind == "tar":
        items[-1] = (f"./{member}", items[-1][1])  # the same member spelt another way
        voc_path = write_tar(tmp_path / "voc.tar", items)
    else:
        voc_path = write_zip(tmp_path / "voc.zip", items)
    sbd_path = write_tar(tmp_path / "sbd.tgz", sbd, "w:gz")
    with pytest.raises(ArchiveError, match=rf"{voc_path.name}.*{member}.* twice"):
        prepare_pascal5i(voc_path, sbd_path, tmp_path / "out", progress=False)


# --------------------------------------------------------------------------- a failed run changes nothing


def test_a_bad_member_found_mid_run_leaves_out_as_it_was(tmp_path):
    out = tmp_path / "out"
    voc_dir = out / "VOCdevkit" / "VOC2012"
    (voc_dir / "JPEGImages").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (voc_dir / "JPEGImages" / "2007_000001.jpg").write_bytes(b"my own image")
    voc, sbd = pascal_members()
    bad = dict(voc)
    bad[f"{VOC_ROOT}SegmentationClass/2007_000002.png"] = b"junk"  # stored after the other label and images
    archives = _archives(tmp_path / "bad", bad, sbd)
    before = _files(tmp_path)  # the archives included
    with pytest.raises(ArchiveError, match=r"2007_000002\.png"):
        prepare_pascal5i(*archives, out, progress=False)
    assert _files(tmp_path) == before  # nothing written, no temporary folder left beside --out

    summary = prepare_pascal5i(*_archives(tmp_path / "good", voc, sbd), out, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    assert (voc_dir / "JPEGImages" / "2007_000001.jpg").read_bytes() == b"my own image"  # kept, not replaced
    assert summary.skipped == 1 and (voc_dir / "SegmentationClassAug" / "2008_000001.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good", "out"]


def test_a_list_of_the_users_is_never_overwritten(tmp_path):
    out = tmp_path / "out"
    mine = out / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own list\n")
    archives = _archives(tmp_path / "archives", *pascal_members())
    with pytest.raises(FileExistsError, match=r"train\.txt.* differs"):
        prepare_pascal5i(*archives, out, progress=False)
    assert mine.read_text() == "my own list\n"
    assert sorted(p.name for p in (out / "VOCdevkit" / "VOC2012").iterdir()) == ["ImageSets"]


def test_the_stage_goes_inside_out_when_only_out_is_writable(tmp_path, monkeypatch):
    import tempfile

    mkdtemp = tempfile.mkdtemp

    def beside_out_forbidden(prefix: str, suffix: str, dir: Path) -> str:
        if Path(dir) == tmp_path:
            raise PermissionError(13, "Permission denied", str(dir))
        return mkdtemp(prefix=prefix, suffix=suffix, dir=dir)

    monkeypatch.setattr(tempfile, "mkdtemp", beside_out_forbidden)
    (tmp_path / "out").mkdir()
    summary = prepare_pascal5i(*_archives(tmp_path / "archives", *pascal_members()), tmp_path / "out", progress=False)
    assert summary.written == 3 + 3 + 4 and [p.name for p in (tmp_path / "out").iterdir()] == ["VOCdevkit"]


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("mine")
    with pytest.raises(FileExistsError, match="-o"):
        prepare_pascal5i(*_archives(tmp_path / "archives", *pascal_members()), tmp_path / "out", progress=False)
    assert (tmp_path / "out").read_text() == "mine"


# ---------------------------------------------------------------------------------------- property test

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: Name pieces a hostile archive would use; hypothesis joins them with plain and unicode text.
PIECES = ["..", ".", "/", "\\", "", "~", "/tmp", "C:", "\x00", "é", "ß", "漢", "\u202e", " ", "a", "2007_000001"]
_piece = st.one_of(st.sampled_from(PIECES), st.text(min_size=1, max_size=4))
_name = st.lists(_piece, min_size=1, max_size=5).map("".join)
#: What a member is: a file (good or junk bytes), a symbolic link or a hard link (to a name).
_kind = st.sampled_from(["file", "junk", "symlink", "hardlink"])


def _hostile_voc(path: Path, fmt: str, ids: list[str], extra: list[tuple[str, str, str]]) -> Path:
    """VOC archive of ``pascal_members`` whose train list also names ``ids`` (with members), plus ``extra``."""
    import tarfile
    import zipfile

    voc, _ = pascal_members()
    voc[VOC_TRAIN] = "".join(f"{i}\n" for i in ["2007_000001", *ids]).encode("utf-8", "surrogatepass")
    members = [(name, "file", data) for name, data in voc.items()]
    for i in ids:
        members.append((f"{VOC_ROOT}JPEGImages/{i}.jpg", "file", voc[f"{VOC_ROOT}JPEGImages/2007_000001.jpg"]))
        members.append((f"{VOC_ROOT}SegmentationClass/{i}.png", "file", palette_png(np.zeros((48, 64), np.uint8))))
    members += [(f"{VOC_ROOT}{where}/{name}", kind, target.encode()) for where, name, kind, target in extra]
    if fmt == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            for name, kind, data in members:
                info = zipfile.ZipInfo(name)
                if kind in ("symlink", "hardlink"):
                    info.external_attr = 0o120777 << 16
                archive.writestr(info, b"junk" if kind == "junk" else data)
        return path
    with tarfile.open(path, "w:gz" if fmt == "tgz" else "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data.decode()
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, data.decode()
            content = b"junk" if kind == "junk" else data
            info.size = len(content) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(content) if info.isfile() else None)
    return path


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fmt=st.sampled_from(["tar", "tgz", "zip"]),
    ids=st.lists(_name, max_size=3),
    extra=st.lists(
        st.tuples(st.sampled_from(["JPEGImages", "SegmentationClass", ""]), _name, _kind, _name), max_size=4
    ),
)
def test_no_archive_writes_outside_out_and_every_failure_is_clear(tmp_path_factory, fmt, ids, extra):
    ids = [i for i in ids if "\n" not in i and "\r" not in i and i.strip() == i]  # one id a line, as the lists
    base = tmp_path_factory.mktemp("hostile")
    (base / "beside").mkdir()
    (base / "beside" / "keep.txt").write_text("beside --out")
    try:
        voc = _hostile_voc(base / f"voc.{fmt}", fmt, ids, extra)
    except (UnicodeEncodeError, ValueError):  # a name the format itself cannot hold
        return
    sbd = write_tar(base / "sbd.tgz", pascal_members()[1], "w:gz")
    out = base / "deep" / "out"
    before = _files(base)
    try:
        summary = prepare_pascal5i(voc, sbd, out, progress=False)
    except ArchiveError as error:
        event(f"refused: {str(error).split(': ')[-1][:40]}")
        assert voc.name in str(error) or sbd.name in str(error), error
        assert _files(base) == before
    else:
        event("prepared")
        assert summary.counts["images"] >= 2
    written = set(_files(base)) - set(before)
    assert all(Path(p).is_relative_to(out) for p in written), written
    assert all(_files(base)[p] == before[p] for p in before)
    assert {p.name for p in base.iterdir()} - {"deep"} == {"beside", voc.name, sbd.name}


# ------------------------------------------------------------------------ label values out of PASCAL's range

VOC_LABEL = f"{VOC_ROOT}SegmentationClass/2007_000001.png"
SBD_LABEL = f"{SBD_ROOT}cls/2008_000001.mat"


def _one_pixel(value: int, dtype: type = np.uint8) -> np.ndarray:
    label = np.zeros((48, 64), dtype)
    label[3, 5] = value
    return label


def _prepare_with(tmp_path: Path, which: str, content: bytes) -> Path:
    """prepare pascal5i on ``pascal_members`` with VOC's 2007_000001 label or SBD's 2008_000001 replaced."""
    voc, sbd = pascal_members()
    if which == "voc":
        voc[VOC_LABEL] = content
    else:
        sbd[SBD_LABEL] = content
    out = tmp_path / "out"
    prepare_pascal5i(*_archives(tmp_path / "archives", voc, sbd), out, progress=False)
    return (
        out
        / "VOCdevkit"
        / "VOC2012"
        / "SegmentationClassAug"
        / f"{'2007_000001' if which == 'voc' else '2008_000001'}.png"
    )


def _encode(which: str, label: np.ndarray) -> bytes:
    return palette_png(label) if which == "voc" else sbd_mat(label)


@pytest.mark.parametrize("which", ["voc", "sbd"])
@pytest.mark.parametrize("value", [0, 20, 255])  # background, the largest class id, VOC's boundary band
def test_every_pascal_class_id_and_255_are_written_as_they_are(tmp_path, which, value):
    written = _prepare_with(tmp_path, which, _encode(which, _one_pixel(value)))
    np.testing.assert_array_equal(read_label(written), _one_pixel(value))


@pytest.mark.parametrize("which", ["voc", "sbd"])
@pytest.mark.parametrize("value", [21, 25, 254])  # the first id past PASCAL's 20 classes, a COCO-like id, 254
def test_a_label_value_outside_pascals_classes_is_refused_naming_it(tmp_path, which, value):
    archive, member = ("VOCtrainval.tar", VOC_LABEL) if which == "voc" else ("benchmark.tgz", SBD_LABEL)
    with pytest.raises(
        ArchiveError, match=rf"{archive}.*{member}.* value {value} \(row 3, column 5\).*0 to 20, or 255"
    ):
        _prepare_with(tmp_path, which, _encode(which, _one_pixel(value)))
    assert not (tmp_path / "out").exists()


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")  # uint16: a 16-bit PNG (I;16), (H, W, 3) uint8: RGB
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("array", "found"),
    [
        (_one_pixel(300, np.uint16), "I;16"),  # a 16-bit PNG: 300 would be cut to 44 as uint8
        (_one_pixel(1, np.uint16), "I;16"),  # even with class ids in range
        (np.stack([_one_pixel(1)] * 3, -1), "RGB"),  # a colour rendering of the palette
    ],
    ids=["16-bit 300", "16-bit 1", "RGB"],
)
def test_a_voc_label_png_that_is_not_8_bit_palette_or_grey_is_refused(tmp_path, array, found):
    with pytest.raises(ArchiveError, match=rf"VOCtrainval\.tar.*{VOC_LABEL}.*palette or greyscale PNG.*'{found}'"):
        _prepare_with(tmp_path, "voc", _png(array))


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        (_one_pixel(1.5, np.float64), "integer class ids.*float64"),  # would be cut to 1
        (_one_pixel(1, np.float64), "integer class ids.*float64"),
        (_one_pixel(-1, np.int16), r"value -1 \(row 3, column 5\)"),  # would wrap to 255, the ignore value
        (_one_pixel(256, np.int64), r"value 256 \(row 3, column 5\)"),  # would wrap to 0
        (_one_pixel(255 + 21, np.uint16), r"value 276 \(row 3, column 5\)"),  # would wrap to 20
        (np.zeros((2, 48, 64), np.uint8), r"2-D GTcls\.Segmentation.*\(2, 48, 64\)"),
        (np.zeros((0, 64), np.uint8), r"2-D GTcls\.Segmentation.*\(0,\)"),  # loadmat squeezes it to 1-D
    ],
    ids=["float 1.5", "float 1.0", "int16 -1", "int64 256", "uint16 276", "3-D", "empty"],
)
def test_an_sbd_segmentation_of_the_wrong_type_or_range_is_refused(tmp_path, label, reason):
    with pytest.raises(ArchiveError, match=rf"benchmark\.tgz.*{SBD_LABEL}.*{reason}"):
        _prepare_with(tmp_path, "sbd", sbd_mat(label))


def test_an_sbd_segmentation_of_a_wider_integer_type_in_range_is_accepted(tmp_path):
    written = _prepare_with(tmp_path, "sbd", sbd_mat(_one_pixel(20, np.int64)))
    np.testing.assert_array_equal(read_label(written), _one_pixel(20))


# ------------------------------------------------------------------------------ COCO categories a stranger made


def _annotation(category: object, polygon: list[float]) -> dict:
    return {"id": 1, "image_id": 1, "category_id": category, "segmentation": [polygon], "area": 1.0,
            "bbox": [0.0, 0.0, 1.0, 1.0], "iscrowd": 0}  # fmt: skip


SQUARE = [10.0, 10.0, 20.0, 10.0, 20.0, 20.0, 10.0, 20.0]


@pytest.mark.parametrize("category", [0, 12, 91, 255, -1, True, 1.0, "1"])  # 12 is a gap in COCO's ids
def test_a_coco_category_id_that_is_not_one_of_cocos_80_is_refused(tmp_path, category):
    pytest.importorskip("pycocotools")
    names = ["COCO_train2014_000000000001.jpg"]
    categories = [{"id": 1, "name": "person"}, {"id": category, "name": "odd"}]
    images, notes = _coco(tmp_path / "archives", names, annotations=[_annotation(1, SQUARE)], categories=categories)
    with pytest.raises(ArchiveError, match=rf"instances_train2014\.json, categories\[1\]\.id: {category!r} .*80"):
        prepare_coco20i(images, notes, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("category", [3, 2, True, 1.0, "1", None])  # not listed, a gap, or not an integer
def test_an_annotation_category_id_that_is_not_a_listed_integer_id_is_refused(tmp_path, category):
    pytest.importorskip("pycocotools")
    names = ["COCO_train2014_000000000001.jpg"]
    images, notes = _coco(tmp_path / "archives", names, annotations=[_annotation(category, SQUARE)])
    with pytest.raises(ArchiveError, match=rf"instances_train2014\.json, annotations\[0\]\.category_id: {category!r}"):
        prepare_coco20i(images, notes, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_coco_polygon_reaching_outside_the_image_is_clipped_to_it(tmp_path):
    pytest.importorskip("pycocotools")
    outside = [50.0, 40.0, 100.0, 40.0, 100.0, 100.0, 50.0, 100.0]  # x 50..100, y 40..100 on a 64x48 image
    far = [-90.0, -90.0, -50.0, -90.0, -50.0, -50.0]  # wholly outside: paints nothing
    annotations = [_annotation(90, outside), {**_annotation(1, far), "id": 2}]
    categories = [{"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}]  # 90: COCO's largest id
    names = ["COCO_train2014_000000000001.jpg"]
    images, notes = _coco(tmp_path / "archives", names, annotations=annotations, categories=categories)
    prepare_coco20i(images, notes, tmp_path / "out", progress=False)
    (written,) = (tmp_path / "out").glob("ntre_zoo_labels/train2014_*/COCO_train2014_000000000001.png")
    label = read_label(written)
    assert label.shape == (48, 64) and set(np.unique(label)) == {0, 2}
    assert (label[40:, 50:] == 2).all() and not label[:40].any() and not label[:, :50].any()
