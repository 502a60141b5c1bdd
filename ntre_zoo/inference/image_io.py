"""Turn user images and masks (paths, PIL images, numpy arrays, tensors) into tensors, with errors that
name the argument and index that was wrong.

The reading rules live here so that every kind of annotation uses the same ones: files are read in their
displayed orientation (EXIF), float values must be finite, a mask is binary unless a ``mask_threshold`` says
how to binarise it, a colour mask is accepted only when it is grey (R = G = B), and an image or mask larger than
``max_pixels`` (default :data:`MAX_PIXELS`) is refused, a file from its header before it is decoded.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["MAX_PIXELS", "as_list", "check_mask_threshold", "check_max_pixels", "load_image", "load_mask"]

_PATH_TYPES = (str, os.PathLike)
#: PIL modes whose values are read as they are (one channel, or grey after dropping alpha / the palette).
_MASK_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "F", "LA", "PA", "RGB", "RGBA")
_INTEGER_MASK_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32)
#: The most pixels (height x width) an image or mask may have unless ``max_pixels`` says otherwise: 40 megapixels,
#: a 7746 x 5164 photo. Reading and predicting take about 30 bytes per pixel (the decoded file, the float image,
#: the mask and maps at the original size), so one image costs at most about 1.2 GB; a 17 KB PNG can declare
#: 12000 x 12000 pixels, and PIL's own ``Image.MAX_IMAGE_PIXELS`` only warns below twice its 89 megapixels.
MAX_PIXELS = 40_000_000


def as_list(value: Any) -> list[Any]:
    """A single image (path, PIL, array, 3-D tensor) becomes ``[value]``; a list/tuple, or a 4-D
    stack (``(K, 3, H, W)`` tensor or ``(K, H, W, 3)`` array), becomes a list of items."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        return list(value.unbind(0))
    if isinstance(value, np.ndarray) and value.ndim == 4:
        return list(value)
    return [value]


def check_max_pixels(max_pixels: Any) -> int | None:
    """``max_pixels`` if it is None (no cap) or a positive integer.

    Raises:
        TypeError, ValueError: naming the value.
    """
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral):
        raise TypeError(f"max_pixels must be a whole number of pixels (or None: no cap), got {max_pixels!r}.")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1 (or None: no cap), got {max_pixels!r}.")
    return int(max_pixels)


def _too_large(height: int, width: int, name: str, max_pixels: int) -> ValueError:
    return ValueError(
        f"{name}: the image is {width} x {height} pixels ({height * width / 1e6:.1f} megapixels), more than "
        f"max_pixels={max_pixels} ({max_pixels / 1e6:g} megapixels), the cap that keeps one image from exhausting "
        "memory (about 30 bytes per pixel). Shrink the image, or raise the cap: max_pixels=N (None: no cap) in "
        "predict, segment and encode_support."
    )


def _check_pixels(height: int, width: int, name: str, max_pixels: int | None) -> None:
    """Refuse an image of more than ``max_pixels`` pixels, before any work is done on it."""
    if max_pixels is not None and height * width > max_pixels:
        raise _too_large(height, width, name, max_pixels)


def _open(path: Any, name: str, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Read an image file in its displayed orientation (EXIF ``Orientation`` applied, as viewers do), after
    checking its size in the header against ``max_pixels``."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            size = image.size
            if max_pixels is None or size[0] * size[1] <= max_pixels:
                image.load()
                return ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file {str(path)!r}.") from None
    except IsADirectoryError:
        raise FileNotFoundError(f"{name}: {str(path)!r} is a directory, not an image file.") from None
    except PermissionError:
        raise PermissionError(
            f"{name}: permission denied reading {str(path)!r}; make it readable (e.g. chmod a+r) or copy it."
        ) from None
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"{name}: {str(path)!r} is larger than PIL accepts ({error}). To read it, raise "
            "PIL.Image.MAX_IMAGE_PIXELS as well as max_pixels."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{name}: cannot read {str(path)!r} as an image ({error}).") from None
    raise _too_large(size[1], size[0], f"{name} ({str(path)!r})", max_pixels)


def _from_numpy(array: np.ndarray, name: str) -> torch.Tensor:
    """A numpy array as a tensor (native byte order, writable, C-contiguous)."""
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    try:
        return torch.from_numpy(np.require(array, requirements=("C", "W")))
    except TypeError:
        raise TypeError(
            f"{name}: unsupported numpy dtype {array.dtype}; expected uint8, uint16, bool or float."
        ) from None


def _check_finite(tensor: torch.Tensor, name: str) -> None:
    """Refuse NaN and infinities, naming the first such element."""
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        where = tuple(int(i) for i in (~finite).nonzero()[0])
        raise ValueError(
            f"{name}: holds {int((~finite).sum())} non-finite value(s) (NaN or infinity), e.g. "
            f"{float(tensor[where])} at row {where[-2]}, column {where[-1]}; replace them (e.g. with "
            "torch.nan_to_num) before calling."
        )


def _check_size(tensor: torch.Tensor, name: str, shown: tuple[int, ...]) -> None:
    if tensor.shape[-1] == 0 or tensor.shape[-2] == 0:
        raise ValueError(f"{name}: an image or mask must be at least 1x1 pixels, got shape {shown}.")


def _pil_to_array(image: Image.Image, name: str) -> np.ndarray:
    """PIL image -> HxWx3 uint8, HxW uint16 (16-bit modes) or HxW float32 (mode F)."""
    if image.mode.startswith("I"):
        array = np.asarray(image)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError(f"{name}: {image.mode} image values exceed the 16-bit range.")
        return array.astype(np.uint16)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))  # no copy of an RGB image


def load_image(value: Any, name: str, max_pixels: int | None = MAX_PIXELS) -> torch.Tensor:
    """Read an image as a float ``(3, H, W)`` tensor in [0, 1].

    Accepts a file path (read in its displayed orientation: EXIF ``Orientation`` is applied), a
    ``PIL.Image`` (any mode: grayscale, RGBA, palette, 16-bit; taken as it is), an ``HxW``, ``HxWx1``,
    ``HxWx3`` or ``HxWx4`` numpy array (uint8, uint16, or float in [0, 1]), or a ``3xHxW`` (or ``1xHxW``)
    tensor (uint8, or float in [0, 1]). Alpha is dropped; gray is repeated to RGB. NaN and infinities are
    refused, and so is an image of more than ``max_pixels`` pixels (default :data:`MAX_PIXELS`; None: no
    cap), a file before it is decoded.

    Raises:
        FileNotFoundError, ValueError, TypeError: naming ``name`` and what was expected.
        PermissionError: a file that exists but cannot be read.
    """
    max_pixels = check_max_pixels(max_pixels)
    if isinstance(value, _PATH_TYPES):
        value = _open(value, name, max_pixels)
    if isinstance(value, Image.Image):
        _check_pixels(value.height, value.width, name, max_pixels)
        value = _pil_to_array(value, name)
    if isinstance(value, np.ndarray):
        return _array_to_tensor(value, name, max_pixels)
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dim() == 2:
            tensor = tensor[None]
        if tensor.dim() != 3 or tensor.shape[0] not in (1, 3, 4):
            raise ValueError(
                f"{name}: a tensor image must have shape (3, H, W) (or (1, H, W)), got {tuple(value.shape)}."
            )
        _check_size(tensor, name, tuple(value.shape))
        _check_pixels(tensor.shape[-2], tensor.shape[-1], name, max_pixels)
        return _scale(tensor[:3].expand(3, -1, -1) if tensor.shape[0] == 1 else tensor[:3], name)
    raise TypeError(
        f"{name}: expected a file path, PIL.Image, numpy array or torch.Tensor, got {type(value).__name__}."
    )


def _array_to_tensor(array: np.ndarray, name: str, max_pixels: int | None) -> torch.Tensor:
    shape = array.shape
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name}: a numpy image must have shape (H, W), (H, W, 3) or (H, W, 4), got {shape}.")
    _check_pixels(array.shape[0], array.shape[1], name, max_pixels)
    tensor = _from_numpy(array, name).permute(2, 0, 1)
    _check_size(tensor, name, shape)
    return _scale(tensor.expand(3, -1, -1) if tensor.shape[0] == 1 else tensor[:3], name)


def _scale(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """uint8 / 16-bit / float [0, 1] -> float32 [0, 1]."""
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0)  # in place: one float copy of a large image, not two
    if tensor.dtype == torch.uint16:
        return tensor.to(torch.float32).div_(65535.0)
    if tensor.is_floating_point():
        _check_finite(tensor, name)
        tensor = tensor.float()
        if tensor.numel() and (float(tensor.min()) < 0 or float(tensor.max()) > 1):
            raise ValueError(
                f"{name}: a float image must be in [0, 1], got values in [{float(tensor.min()):.3g}, "
                f"{float(tensor.max()):.3g}]; pass uint8 data or divide by 255."
            )
        return tensor
    raise TypeError(f"{name}: unsupported image dtype {tensor.dtype}; expected uint8, uint16 or float in [0, 1].")


def check_mask_threshold(threshold: Any, name: str = "mask_threshold") -> float | None:
    """``None``, or a finite real number (the value above which a soft mask's pixel is target).

    Raises:
        TypeError, ValueError: naming ``name`` and the value.
    """
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"{name} must be a number (e.g. 127 for 0..255 masks, 0.5 for [0, 1]), got {threshold!r}.")
    if not math.isfinite(threshold):
        raise ValueError(f"{name} must be a finite number, got {threshold!r}.")
    return float(threshold)


def _mask_array(image: Image.Image, name: str) -> tuple[np.ndarray | torch.Tensor, str]:
    """A PIL mask as its ``(H, W)`` values (RGB/RGBA: the grey ones, here where the channels are known to be
    last, so that a 1-pixel-high image is not taken for a ``1xHxW`` one), and its description."""
    if image.mode not in _MASK_MODES:
        raise ValueError(
            f"{name}: a mask must be a single-channel image (L, P or 1) or a grey RGB one, got mode {image.mode!r}; "
            "convert it, e.g. image.convert('L')."
        )
    if image.mode in ("LA", "PA"):
        image = image.convert("L")
    what = f"a mode {image.mode!r} image"
    array = np.asarray(image)
    return (_grey(_from_numpy(array, name), name, what) if array.ndim == 3 else array), what


def _grey(mask: torch.Tensor, name: str, what: str) -> torch.Tensor:
    """An ``(H, W, 3|4)`` colour mask -> its ``(H, W)`` grey values, or a ValueError if R, G and B differ."""
    colour = mask[..., :3]
    differs = (colour != colour[..., :1]).any(dim=-1)
    if bool(differs.any()):
        y, x = (int(i) for i in differs.nonzero()[0])
        raise ValueError(
            f"{name}: {what} is a colour mask: R, G and B differ (e.g. {tuple(colour[y, x].tolist())} at row {y}, "
            f"column {x}), so which pixels are target is ambiguous. Pass one channel: a grey version "
            "(PIL: image.convert('L')), or the pixels of the target colour, e.g. "
            "(np.asarray(image)[..., :3] == (255, 0, 0)).all(-1)."
        )
    return colour[..., 0]


def load_mask(
    value: Any, name: str, threshold: float | None = None, max_pixels: int | None = MAX_PIXELS
) -> torch.Tensor:
    """Read a binary mask as an int64 ``(H, W)`` tensor in {0, 1, 255}.

    Accepts a path (read in its displayed orientation, EXIF applied), a ``PIL.Image`` (modes 1, L, P, I, F;
    RGB/RGBA when grey, R = G = B), or a 2-D (or ``HxWx1``/``1xHxW``, or grey ``HxWx3``) numpy array or
    tensor: bool, {0, 1}, or {0, 255} (255 = target). A {0, 1, 255} mask keeps 255 as "ignore".

    Args:
        value: the mask.
        name: the argument, for error messages (``support_masks[2]``).
        threshold: binarise a soft mask (anti-aliased, JPEG-compressed, a probability map): target where the
            value is above ``threshold``, in the mask's own scale (e.g. 127 for 0..255, 0.5 for [0, 1]); no
            pixel is "ignore" then. Default: the mask must already be binary.
        max_pixels: refuse a mask of more pixels (default :data:`MAX_PIXELS`; None: no cap), a file before
            it is decoded.

    Raises:
        ValueError: other values (naming those found), NaN or infinity, a colour image, or a wrong rank.
        TypeError: an unsupported type or dtype.
    """
    threshold = check_mask_threshold(threshold)
    max_pixels = check_max_pixels(max_pixels)
    what = "the mask"
    if isinstance(value, _PATH_TYPES):
        value = _open(value, name, max_pixels)
    if isinstance(value, Image.Image):
        _check_pixels(value.height, value.width, name, max_pixels)
        value, what = _mask_array(value, name)
    if isinstance(value, np.ndarray):
        value = _from_numpy(value, name)
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name}: expected a file path, PIL.Image, numpy array or torch.Tensor mask, got {type(value).__name__}."
        )
    mask = value.detach().cpu()
    if mask.dim() == 3 and 1 in (mask.shape[0], mask.shape[-1]):
        mask = mask.squeeze(0) if mask.shape[0] == 1 else mask.squeeze(-1)
    elif mask.dim() == 3 and mask.shape[-1] in (3, 4):
        mask = _grey(mask, name, what)
    if mask.dim() != 2:
        raise ValueError(f"{name}: a mask must have shape (H, W), got {tuple(value.shape)}.")
    _check_size(mask, name, tuple(value.shape))
    _check_pixels(mask.shape[0], mask.shape[1], name, max_pixels)
    if mask.dtype == torch.bool:
        mask = mask.to(torch.uint8)
    if mask.is_complex() or not (mask.is_floating_point() or mask.dtype in _INTEGER_MASK_DTYPES):
        raise TypeError(f"{name}: unsupported mask dtype {mask.dtype}; expected bool, an integer type or float.")
    if mask.is_floating_point():
        _check_finite(mask, name)
    if threshold is not None:
        return (mask.to(torch.float64) > threshold).long()
    return _binary(mask, name)


def _binary(mask: torch.Tensor, name: str) -> torch.Tensor:
    """A mask that is already binary, as {0, 1, 255}; anything else is refused with the way out."""
    mask = mask if mask.is_floating_point() else mask.long()
    values = torch.unique(mask)
    allowed = torch.tensor([0, 1, 255], dtype=values.dtype)
    if bool(torch.isin(values, allowed).all()):
        ints = set(values.long().tolist())
        if 1 in ints:
            return mask.long()
        if ints <= {0, 255}:
            return (mask == 255).long()
    unexpected = values[~torch.isin(values, allowed)]
    shown = [v.item() for v in unexpected[:5]]
    low, high = values.min().item(), values.max().item()
    example = "mask_threshold=0.5" if mask.is_floating_point() and high <= 1 else "mask_threshold=127"
    raise ValueError(
        f"{name}: mask values must be bool, {{0, 1}} or {{0, 255}}; found {shown}"
        f"{' ...' if len(unexpected) > 5 else ''} ({len(values)} distinct values in [{low}, {high}]). A soft mask "
        f"(anti-aliased or JPEG-compressed edges, a probability map) can be binarised with mask_threshold= (target "
        f"where the value is above it, e.g. {example}); for a class-label map, pass (label == class_id)."
    )
