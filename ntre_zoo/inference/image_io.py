"""Turn user images and masks (paths, PIL images, numpy arrays, tensors) into tensors, with errors that
name the argument and index that was wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["as_list", "load_image", "load_mask"]

_PATH_TYPES = (str, os.PathLike)


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


def _open(path: Any, name: str) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such file {str(path)!r}.")
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{name}: cannot read {str(path)!r} as an image ({error}).") from None


def _pil_to_array(image: Image.Image, name: str) -> np.ndarray:
    """PIL image -> HxWx3 uint8, HxW uint16 (16-bit modes) or HxW float32 (mode F)."""
    if image.mode.startswith("I"):
        array = np.asarray(image)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError(f"{name}: {image.mode} image values exceed the 16-bit range.")
        return array.astype(np.uint16)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    return np.asarray(image.convert("RGB"))


def load_image(value: Any, name: str) -> torch.Tensor:
    """Read an image as a float ``(3, H, W)`` tensor in [0, 1].

    Accepts a file path, a ``PIL.Image`` (any mode: grayscale, RGBA, palette, 16-bit), an ``HxW``,
    ``HxWx1``, ``HxWx3`` or ``HxWx4`` numpy array (uint8, uint16, or float in [0, 1]), or a ``3xHxW``
    (or ``1xHxW``) tensor (uint8, or float in [0, 1]). Alpha is dropped; gray is repeated to RGB.

    Raises:
        FileNotFoundError, ValueError, TypeError: naming ``name`` and what was expected.
    """
    if isinstance(value, _PATH_TYPES):
        value = _open(value, name)
    if isinstance(value, Image.Image):
        array = _pil_to_array(value, name)
        return _array_to_tensor(array, name)
    if isinstance(value, np.ndarray):
        return _array_to_tensor(value, name)
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dim() == 2:
            tensor = tensor[None]
        if tensor.dim() != 3 or tensor.shape[0] not in (1, 3, 4):
            raise ValueError(
                f"{name}: a tensor image must have shape (3, H, W) (or (1, H, W)), got {tuple(value.shape)}."
            )
        return _scale(tensor[:3].expand(3, -1, -1) if tensor.shape[0] == 1 else tensor[:3], name)
    raise TypeError(
        f"{name}: expected a file path, PIL.Image, numpy array or torch.Tensor, got {type(value).__name__}."
    )


def _array_to_tensor(array: np.ndarray, name: str) -> torch.Tensor:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name}: a numpy image must have shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}.")
    array = np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array[..., :3]
    return _scale(torch.from_numpy(np.require(array, requirements=("C", "W"))).permute(2, 0, 1), name)


def _scale(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """uint8 / 16-bit / float [0, 1] -> float32 [0, 1]."""
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    if tensor.dtype == torch.uint16:
        return tensor.to(torch.float32) / 65535.0
    if tensor.is_floating_point():
        tensor = tensor.float()
        if tensor.numel() and (float(tensor.min()) < 0 or float(tensor.max()) > 1):
            raise ValueError(
                f"{name}: a float image must be in [0, 1], got values in [{float(tensor.min()):.3g}, "
                f"{float(tensor.max()):.3g}]; pass uint8 data or divide by 255."
            )
        return tensor
    raise TypeError(f"{name}: unsupported image dtype {tensor.dtype}; expected uint8, uint16 or float in [0, 1].")


def load_mask(value: Any, name: str) -> torch.Tensor:
    """Read a binary mask as an int64 ``(H, W)`` tensor in {0, 1, 255}.

    Accepts a path, a ``PIL.Image`` (modes L, P, 1, I), or a 2-D (or ``HxWx1``/``1xHxW``) numpy array or
    tensor: bool, {0, 1}, or {0, 255} (255 = target). A {0, 1, 255} mask keeps 255 as "ignore".

    Raises:
        ValueError: other values, a colour image, or a wrong rank.
    """
    if isinstance(value, _PATH_TYPES):
        value = _open(value, name)
    if isinstance(value, Image.Image):
        if value.mode not in ("L", "P", "1", "I", "I;16", "I;16B", "I;16L", "LA", "PA"):
            raise ValueError(f"{name}: a mask must be a single-channel image (L, P or 1), got mode {value.mode!r}.")
        value = np.asarray(value.convert("L") if value.mode in ("LA", "PA") else value)
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.require(value, requirements=("C", "W")))
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name}: expected a file path, PIL.Image, numpy array or torch.Tensor mask, got {type(value).__name__}."
        )
    mask = value.detach().cpu()
    if mask.dim() == 3 and 1 in (mask.shape[0], mask.shape[-1]):
        mask = mask.squeeze(0) if mask.shape[0] == 1 else mask.squeeze(-1)
    if mask.dim() != 2:
        raise ValueError(f"{name}: a mask must have shape (H, W), got {tuple(value.shape)}.")
    if mask.dtype == torch.bool:
        return mask.long()
    if mask.is_floating_point() and not torch.equal(mask, mask.round()):
        raise ValueError(f"{name}: a float mask must hold whole values 0/1 (or 0/255); threshold it first.")
    mask = mask.long()
    values = set(torch.unique(mask).tolist())
    if values <= {0, 1, 255} and 1 in values:
        return mask
    if values <= {0, 255}:
        return (mask == 255).long()
    unexpected = sorted(values - {0, 1, 255})[:5]
    raise ValueError(
        f"{name}: mask values must be bool, {{0, 1}} or {{0, 255}}; found {unexpected}. "
        "For a class-label map, pass (label == class_id)."
    )
