"""What one archive member must be before ``prepare`` writes anything from it: an image of the format its name
says, within the pixel cap (read from its header, never decoded), a VOC label PNG, or an SBD ``.mat`` label
inflated within the cap, each label holding only PASCAL VOC class ids (0 to 20, and 255, VOC's boundary band).
Each check raises ``ValueError`` with a reason that the caller prefixes with the
archive and the member."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ImageFile, JpegImagePlugin, PngImagePlugin

from ..._atomic import atomic_write
from ..index import write_label
from ..preprocessing import IGNORE_INDEX
from ..splits import PASCAL_CLASSES
from .archives import mib

__all__ = ["copy_image", "image_size", "read_sbd_label", "read_voc_label", "sbd_label", "voc_label"]

#: The image format a file name's extension promises, and the plugin that reads its header.
_FORMATS: dict[str, tuple[str, type[ImageFile.ImageFile]]] = {
    ".jpg": ("JPEG", JpegImagePlugin.JpegImageFile),
    ".jpeg": ("JPEG", JpegImagePlugin.JpegImageFile),
    ".png": ("PNG", PngImagePlugin.PngImageFile),
}
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF", b"BM": "BMP", b"MATLAB": "MAT"}
#: What reading a hostile header or pixel stream can raise inside PIL or scipy.
_DECODE_ERRORS = (SyntaxError, OSError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error)
_MI_COMPRESSED = 15
#: The version word of a MATLAB 5 file header (bytes 124-125, in the file's byte order).
_MAT5_VERSION = 0x0100


def _open(data: bytes | Path, suffix: str, max_pixels: int) -> ImageFile.ImageFile:
    """The image, header read and pixels not decoded, if it is of ``suffix``'s format and within ``max_pixels``.

    The format's own plugin reads the header, so PIL's global bomb check (which only warns below twice its
    limit) is not what guards: the caller's cap is.
    """
    expected, plugin = _FORMATS[suffix.lower()]
    if isinstance(data, bytes):
        head = data[:8]
    else:
        with open(data, "rb") as handle:
            head = handle.read(8)
    found = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
    if found != expected:
        raise ValueError(f"is a {found}, not a {expected}" if found else f"is not a {expected} image")
    try:
        image = plugin(io.BytesIO(data) if isinstance(data, bytes) else str(data))
    except _DECODE_ERRORS as error:
        raise ValueError(f"is not a readable {expected} ({type(error).__name__}: {error})") from error
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ValueError(
            f"is {width}x{height} = {width * height:,} pixels, more than the {max_pixels:,} pixels allowed (one "
            "pixel a byte of the per-member cap); refused unread. Raise the cap with --max-member-mib "
            "(max_member_bytes= in Python) if the image is genuine."
        )
    return image


def image_size(path: Path, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` of the image file ``path``, checked as :func:`_open` does (pixels not decoded)."""
    with _open(path, path.suffix, max_pixels) as image:
        return image.size


def copy_image(out: Path, chunks: Iterator[bytes], max_pixels: int) -> tuple[int, int]:
    """Write the member's bytes unchanged to ``out`` (a staged path), then check them as an image of its
    extension's format; returns its ``(width, height)``."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)

    atomic_write(out, write)
    return image_size(out, max_pixels)


def _class_ids(label: np.ndarray, field: str) -> np.ndarray:
    """``label`` as uint8 if it holds integers that are all PASCAL VOC class ids (0 to 20) or 255 (VOC's boundary
    band, which the loaders ignore); casting anything else would write a wrong label silently."""
    if label.dtype.kind not in "ui":
        raise ValueError(f"must hold integer class ids, but its {field} is of type {label.dtype}")
    bad = ((label > len(PASCAL_CLASSES)) & (label != IGNORE_INDEX)) | (label < 0)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(
            f"holds the {field} value {label[row, column]} (row {row}, column {column}), which is not a PASCAL VOC "
            f"class id: expected 0 to {len(PASCAL_CLASSES)}, or {IGNORE_INDEX} (the boundary band). The archive was "
            "altered or mixed up; use the official download"
        )
    return label.astype(np.uint8)


def read_voc_label(data: bytes, max_pixels: int) -> np.ndarray:
    """A VOC ``SegmentationClass`` PNG (palette) as an ``(H, W)`` uint8 array of class ids, 255 kept.

    Raises:
        ValueError: not an 8-bit palette or greyscale PNG, more than ``max_pixels`` pixels, or a value that is
            not a class id (0 to 20) or 255.
    """
    with _open(data, ".png", max_pixels) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"must be an 8-bit palette or greyscale PNG (a VOC label), got mode {image.mode!r}")
        try:
            label = np.asarray(image, dtype=np.uint8)
        except _DECODE_ERRORS as error:
            raise ValueError(f"is a damaged PNG ({type(error).__name__}: {error})") from error
    return _class_ids(label, "pixel")


def _inflate_mat(data: bytes, limit: int) -> bytes:
    """A MATLAB 5 file with its compressed elements inflated, refused once it passes ``limit`` bytes, so that
    ``loadmat`` never inflates an element without bound (a few KB of zlib can claim gigabytes)."""
    if len(data) < 128 or not data.startswith(b"MATLAB 5.0 MAT-file"):
        raise ValueError("is not a MATLAB 5 .mat file (SBD's format)")
    order = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if order is None:
        raise ValueError("is not a MATLAB 5 .mat file (no byte-order mark)")
    version = struct.unpack_from(order + "H", data, 124)[0]
    if version != _MAT5_VERSION:  # 0x0200 is MATLAB 7.3's HDF5 container, which loadmat cannot read
        raise ValueError(f"is not a MATLAB 5 .mat file (header version {version:#06x}, expected 0x0100)")
    parts, total, position = [data[:128]], 128, 128
    while position < len(data):
        if position + 8 > len(data):
            raise ValueError("is truncated (it ends inside a data element)")
        kind, size = struct.unpack_from(order + "II", data, position)
        if kind >> 16:  # a small element: type and size share the first word, the data the second
            element, position = data[position : position + 8], position + 8
        elif kind == _MI_COMPRESSED:
            body = data[position + 8 : position + 8 + size]
            inflater = zlib.decompressobj()
            try:
                element = inflater.decompress(body, limit - total + 1)
            except zlib.error as error:
                raise ValueError(f"is corrupt ({error})") from error
            if len(element) <= limit - total and not inflater.eof:
                raise ValueError("is truncated (a compressed element ends early)")
            position += 8 + size
        else:
            if position + 8 + size > len(data):
                raise ValueError("is truncated (it ends inside a data element)")
            element, position = data[position : position + 8 + size + (-size % 8)], position + 8 + size + (-size % 8)
        total += len(element)
        if total > limit:
            raise ValueError(
                f"expands to more than {mib(limit)}, the cap on one member; refused as a likely decompression "
                "bomb. Raise the cap with --max-member-mib (max_member_bytes= in Python) if it is genuine."
            )
        parts.append(element)
    return b"".join(parts)


def _loadmat(data: bytes) -> Any:
    try:
        from scipy.io import loadmat
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError("Reading SBD's .mat files needs scipy: pip install 'ntre-zoo[prepare]'.") from error
    return loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)


def read_sbd_label(data: bytes, limit: int) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD ``cls/ID.mat`` as an ``(H, W)`` uint8 array of class ids.

    Args:
        data: the ``.mat`` file's bytes.
        limit: the most its elements may inflate to, in bytes (so also the most pixels the label may have).

    Raises:
        ValueError: not a MATLAB 5 file, truncated, over ``limit``, or no ``GTcls`` struct with a 2-D integer
            ``Segmentation`` of class ids (0 to 20) or 255.
    """
    inflated = _inflate_mat(data, limit)
    try:
        segmentation = np.asarray(_loadmat(inflated)["GTcls"].Segmentation)
    except (*_DECODE_ERRORS, AttributeError) as error:
        raise ValueError(f"is not an SBD class label (no GTcls.Segmentation: {error})") from error
    if segmentation.ndim != 2 or segmentation.size == 0:
        raise ValueError(f"must hold a 2-D GTcls.Segmentation of class ids, got shape {segmentation.shape}")
    return _class_ids(segmentation, "GTcls.Segmentation")


def voc_label(out: Path, chunks: Iterator[bytes], max_pixels: int) -> tuple[int, int]:
    """Write a VOC label member as a single-channel PNG of class ids at ``out``; returns its ``(width, height)``."""
    label = read_voc_label(b"".join(chunks), max_pixels)
    write_label(out, label)
    return label.shape[1], label.shape[0]


def sbd_label(out: Path, chunks: Iterator[bytes], max_pixels: int) -> tuple[int, int]:
    """Write an SBD ``.mat`` member's labels as a single-channel PNG at ``out``; returns its ``(width, height)``."""
    label = read_sbd_label(b"".join(chunks), max_pixels)
    write_label(out, label)
    return label.shape[1], label.shape[0]
