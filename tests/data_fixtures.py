"""Small on-disk datasets in the real benchmark layouts, written by the tests themselves."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zipfile
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ntre_zoo.data.synthetic import _background

#: The two PASCAL archives' roots, as in the official downloads.
VOC_ROOT, SBD_ROOT = "VOCdevkit/VOC2012/", "benchmark_RELEASE/dataset/"

#: Non-contiguous category ids, as in real COCO (which has 80 categories over ids 1-90).
COCO_CATEGORIES = [(1, "person"), (3, "car"), (18, "dog"), (90, "toothbrush")]


def tiny_model(test_size: int = 64):
    from ntre_zoo import create_model

    return create_model(
        "resnet50",
        layers=(1, 1, 1, 1),
        channels=(8, 16, 32, 64),
        stem_width=8,
        reduce_dim=16,
        pyramid_bins=(8, 4, 2),
        test_size=test_size,
    )


def scene(h: int = 50, w: int = 70, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random ``h x w`` RGB image and a binary mask with one rectangle of target in it."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 5 : h // 2, w // 4 : w // 2] = 1
    return image, mask


def _square(mask: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    out = np.zeros_like(mask, dtype=np.uint8)
    out[top : top + side, left : left + side] = 1
    return out


def write_coco(root: Path, rng_seed: int = 0) -> dict[str, list[dict]]:
    """COCO 2014 layout with 6 train and 6 val images; polygon and RLE annotations."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(rng_seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("train", "val"):
        (root / f"{split}2014").mkdir(exist_ok=True)
        images, annotations = [], []
        for i in range(6):
            h, w = 96 + 8 * (i % 3), 128
            image_id = 1000 * (split == "val") + i + 1
            name = f"COCO_{split}2014_{image_id:012d}.jpg"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / f"{split}2014" / name)
            images.append({"id": image_id, "file_name": name, "height": h, "width": w})
            # Two objects per image: category (i % 4) as a polygon square, category ((i + 1) % 4) as RLE.
            cat_a, cat_b = COCO_CATEGORIES[i % 4][0], COCO_CATEGORIES[(i + 1) % 4][0]
            x, y, s = 4, 4, 50
            polygon = [float(v) for v in (x, y, x + s, y, x + s, y + s, x, y + s)]
            annotations.append(
                {
                    "id": len(annotations) + 1 + 10000 * (split == "val"),
                    "image_id": image_id,
                    "category_id": cat_a,
                    "segmentation": [polygon],
                    "area": float(s * s),
                    "bbox": [x, y, s, s],
                    "iscrowd": 0,
                }
            )
            rle = mask_utils.encode(np.asfortranarray(_square(np.zeros((h, w)), 40, 70, 52)))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append(
                {
                    "id": len(annotations) + 1 + 10000 * (split == "val"),
                    "image_id": image_id,
                    "category_id": cat_b,
                    "segmentation": rle,
                    "area": 52.0 * 52,
                    "bbox": [70, 40, 52, 52],
                    "iscrowd": 1,
                }
            )
        data = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c, "name": n, "supercategory": "x"} for c, n in COCO_CATEGORIES],
        }
        (root / "annotations" / f"instances_{split}2014.json").write_text(json.dumps(data))
        written[split] = images
    return written


def write_folder(root: Path, count: int = 8, with_classes: bool = True) -> None:
    """``images/`` + ``masks/`` (classes 1-3 as squares) + optional ``classes.json``."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i in range(count):
        image = rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)
        mask = np.zeros((100, 120), dtype=np.uint8)
        mask[2:50, 2:50] = 1 + i % 3
        mask[50:98, 60:108] = 1 + (i + 1) % 3
        mask[0, :] = 255
        Image.fromarray(image).save(root / "images" / f"img{i}.png")
        Image.fromarray(mask, mode="L").save(root / "masks" / f"img{i}.png")
    if with_classes:
        (root / "classes.json").write_text(json.dumps({"1": "cat", "2": "dog", "3": "cow"}))


# ------------------------------------------------------------------------------ official archives, in small


def jpeg_bytes(rng: np.random.Generator, size: tuple[int, int] = (48, 64), grey: bool = False) -> bytes:
    """A random JPEG of ``size`` = (H, W), RGB or greyscale."""
    shape = size if grey else (*size, 3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def palette_png(label: np.ndarray) -> bytes:
    """A VOC ``SegmentationClass`` PNG (palette mode) of an ``(H, W)`` uint8 class-id map."""
    from ntre_zoo.data.synthetic import voc_palette

    image = Image.fromarray(label, mode="P")
    image.putpalette(voc_palette())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def grey_png(width: int, height: int, pixels: bytes | None = None) -> bytes:
    """A greyscale PNG of ``width x height``: all black when ``pixels`` is None (compressed row by row as it is
    built, a few KB per hundred megapixels: a decompression bomb), else the given IDAT payload, which may hold
    far fewer pixels than the header claims (a file that only PIL's header check sees)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if pixels is None:
        squeeze, row = zlib.compressobj(9), b"\0" * (width + 1)
        rows = [squeeze.compress(row * 500) for _ in range(height // 500)] + [squeeze.compress(row * (height % 500))]
        pixels = b"".join(rows) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def sbd_mat(label: np.ndarray, compressed: bool = True) -> bytes:
    """An SBD ``cls/ID.mat`` (``GTcls.Segmentation``, MATLAB 5, compressed as SBD's are) of a class-id map."""
    from scipy import io as scipy_io

    buffer = io.BytesIO()
    classes = np.unique(label[(label > 0) & (label < 255)])
    segmentation = {"Segmentation": label, "CategoriesPresent": classes.astype(np.uint8)}
    scipy_io.savemat(buffer, {"GTcls": segmentation}, do_compression=compressed)
    return buffer.getvalue()


def write_tar(path: Path, members: dict[str, bytes] | list[tuple[str, bytes]], mode: str = "w") -> Path:
    """A tar (``mode`` "w", "w:gz", ...) of regular-file members, in the given order (duplicates allowed)."""
    with tarfile.open(path, mode) as tar:
        for name, data in members.items() if isinstance(members, dict) else members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: dict[str, bytes] | list[tuple[str, bytes]]) -> Path:
    """A zip of ``members`` in the given order (duplicates allowed: zipfile only warns)."""
    import warnings

    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
        warnings.simplefilter("ignore", UserWarning)
        for name, data in members.items() if isinstance(members, dict) else members:
            archive.writestr(name, data)
    return path


def pascal_members(seed: int = 0, size: tuple[int, int] = (48, 64)) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The smallest VOC 2012 and SBD archives ``prepare pascal5i`` accepts, as ``member -> bytes`` dicts.

    VOC: train ``2007_000001``, val ``2007_000002``, each with image and palette label; SBD: train
    ``2008_000001`` (``.mat`` label and image), val ``2007_000002`` (image and label, VOC's wins).
    """
    rng = np.random.default_rng(seed)
    v, s = VOC_ROOT, SBD_ROOT
    voc = {
        f"{v}ImageSets/Segmentation/train.txt": b"2007_000001\n",
        f"{v}ImageSets/Segmentation/val.txt": b"2007_000002\n",
    }
    sbd = {f"{s}train.txt": b"2008_000001\n", f"{s}val.txt": b"2007_000002\n"}
    for i in ("2007_000001", "2007_000002"):
        voc[f"{v}JPEGImages/{i}.jpg"] = jpeg_bytes(rng, size)
        voc[f"{v}SegmentationClass/{i}.png"] = palette_png(rng.integers(0, 21, size, dtype=np.uint8))
    for i in ("2008_000001", "2007_000002"):
        sbd[f"{s}img/{i}.jpg"] = jpeg_bytes(rng, size)
        sbd[f"{s}cls/{i}.mat"] = sbd_mat(rng.integers(0, 21, size, dtype=np.uint8))
    return voc, sbd


#: timm deep-stem key -> the PSPNet ``resnet50_v2.pth`` key the authors' files use.
PSPNET_STEM = {
    "conv1.0": "conv1",
    "conv1.1": "bn1",
    "conv1.3": "conv2",
    "conv1.4": "bn2",
    "conv1.6": "conv3",
    "bn1": "bn3",
}


#: The test clips' frame size.
H, W = 64, 80


def make_clip(count: int = 16, height: int = H, width: int = W) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames ``uint8 (H, W, 3)`` and label maps (1 = a disc moving right and growing, 2 = a square moving left that
    passes in front of it) on a fixed textured background."""
    background = np.clip(_background(np.random.default_rng(0), height, width), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    frames, labels = [], []
    for t in range(count):
        label = np.zeros((height, width), np.uint8)
        cx, radius = width * (0.2 + 0.5 * t / max(count - 1, 1)), height * (0.15 + 0.1 * t / max(count - 1, 1))
        label[np.hypot(xx - cx, yy - height / 2) <= radius] = 1
        sx = width * (0.85 - 0.6 * t / max(count - 1, 1))
        label[(np.abs(xx - sx) <= height * 0.12) & (np.abs(yy - height * 0.45) <= height * 0.12)] = 2
        frame = background.copy()
        frame[label == 1] = (220, 40, 40)
        frame[label == 2] = (40, 40, 220)
        frame[(label == 1) & ((xx // 4 + yy // 4) % 2 == 0)] = (250, 200, 60)  # a pattern on the disc
        frames.append(frame)
        labels.append(label)
    return frames, labels


def encode_clip(path: Path, frames: list[np.ndarray], pts: list[int] | None = None, time_base=Fraction(1, 12)) -> Path:
    """The frames as a lossless FFV1 Matroska clip (RGB kept exactly), at ``pts`` (default one tick apart)."""
    import av

    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=12)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "bgr0"
        stream.time_base = stream.codec_context.time_base = time_base
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = (pts[i] if pts else i), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def decode(path: Path, fmt: str = "rgb24") -> tuple[list[np.ndarray], list[float], object]:
    """Every frame of a video, its time in seconds, and its stream's average rate (to 0.01 frame/s: MP4 derives
    it from the duration, 12.0002 for 12)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.to_ndarray(format=fmt), float(f.pts * f.time_base)) for f in container.decode(stream)]
        return [f for f, _ in frames], [t for _, t in frames], pytest.approx(float(stream.average_rate), abs=0.01)
