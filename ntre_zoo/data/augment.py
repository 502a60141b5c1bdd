"""Training augmentation (spec section 7.2) on torchvision ``tv_tensors``, driven by a per-episode generator.

Every random draw comes from the ``torch.Generator`` passed in (never the global RNG), so an episode is a
pure function of its seed; the geometric work is done by ``torchvision.transforms.v2.functional`` on an
``Image``/``Mask`` pair so that images are interpolated bilinearly and masks with nearest neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

__all__ = ["AugmentConfig", "augment_pair"]

#: OpenCV's automatic sigma for a 5x5 kernel: 0.3 * ((5 - 1) / 2 - 1) + 0.8.
_BLUR_SIGMA = 1.1


@dataclass(frozen=True)
class AugmentConfig:
    """The reference training pipeline's settings (``util/transform.py`` of PFENet and NTRENet).

    Args:
        crop_size: side of the square training crop (473; PFENet's COCO configs use 641); None: the canvas side
            (``DataConfig.test_size``, the model's ``test_size`` in a training run).
        scale_range: uniform isotropic rescale range.
        rotate_degrees: rotation angle bound, uniform in ``[-d, d]``.
        rotate_p, blur_p, flip_p: probabilities of rotation, 5x5 Gaussian blur and horizontal flip.
        keep_ratio: a crop is redrawn while it keeps less than this fraction of the target pixels ...
        crop_retries: ... at most this many times (the last draw is kept).
    """

    crop_size: int | None = 473
    scale_range: tuple[float, float] = (0.9, 1.1)
    rotate_degrees: float = 10.0
    rotate_p: float = 0.5
    blur_p: float = 0.5
    flip_p: float = 0.5
    keep_ratio: float = 0.85
    crop_retries: int = 31

    def __post_init__(self) -> None:
        if self.crop_size is not None and self.crop_size < 9:
            raise ValueError(f"crop_size must be at least 9, got {self.crop_size!r}.")
        low, high = (float(v) for v in self.scale_range)
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range!r}.")
        object.__setattr__(self, "scale_range", (low, high))
        for key in ("rotate_p", "blur_p", "flip_p", "keep_ratio"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {getattr(self, key)!r}.")
        if self.crop_retries < 0:
            raise ValueError(f"crop_retries must be >= 0, got {self.crop_retries!r}.")


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def augment_pair(
    image: torch.Tensor,
    mask: torch.Tensor,
    config: AugmentConfig,
    fill: Sequence[float],
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale, rotate, blur, flip and crop one image and its binary label, as the reference does.

    Args:
        image: ``(3, H, W)`` float image in [0, 1].
        mask: ``(H, W)`` integer label in {0, 1, 255}.
        config: the pipeline settings.
        fill: per-channel padding value in [0, 1] (the normalisation mean, so padding normalises to 0).
        generator: the episode's generator; all random draws use it.

    Returns:
        ``(image, mask)``: ``(3, S, S)`` float and ``(S, S)`` int64 with ``S = config.crop_size``.
    """
    img = tv_tensors.Image(image.float())
    lab = tv_tensors.Mask(mask.to(torch.uint8))
    fill = [float(v) for v in fill]
    # 1. Isotropic rescale (image bilinear, label nearest).
    scale = _uniform(generator, *config.scale_range)
    h, w = img.shape[-2:]
    size = [max(1, round(h * scale)), max(1, round(w * scale))]
    img = TF.resize(img, size, interpolation=InterpolationMode.BILINEAR, antialias=False)
    lab = TF.resize(lab, size, interpolation=InterpolationMode.NEAREST)
    # 2. Rotation about the centre, same size; image border = mean, label border = ignore.
    if float(torch.rand((), generator=generator)) < config.rotate_p:
        angle = _uniform(generator, -config.rotate_degrees, config.rotate_degrees)
        img = TF.rotate(img, angle, interpolation=InterpolationMode.BILINEAR, fill=fill)
        lab = TF.rotate(lab, angle, interpolation=InterpolationMode.NEAREST, fill=255)
    # 3. 5x5 Gaussian blur on the image only.
    if float(torch.rand((), generator=generator)) < config.blur_p:
        img = TF.gaussian_blur(img, [5, 5], [_BLUR_SIGMA, _BLUR_SIGMA])
    # 4. Horizontal flip.
    if float(torch.rand((), generator=generator)) < config.flip_p:
        img, lab = TF.horizontal_flip(img), TF.horizontal_flip(lab)
    # 5. Pad to the crop size if smaller (odd pixel bottom/right), then crop keeping most of the target.
    if config.crop_size is None:
        raise ValueError(
            "augment_pair needs AugmentConfig.crop_size; None means the canvas side, which EpisodeDataset sets."
        )
    crop = config.crop_size
    h, w = img.shape[-2:]
    pad_h, pad_w = max(crop - h, 0), max(crop - w, 0)
    if pad_h or pad_w:
        padding = [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2]
        img = TF.pad(img, padding, fill=fill)
        lab = TF.pad(lab, padding, fill=255)
        h, w = img.shape[-2:]
    target = int((lab == 1).sum())
    for _attempt in range(config.crop_retries + 1):
        top = int(torch.randint(0, h - crop + 1, (), generator=generator))
        left = int(torch.randint(0, w - crop + 1, (), generator=generator))
        kept = int((lab[..., top : top + crop, left : left + crop] == 1).sum())
        if kept >= config.keep_ratio * target:
            break
    img = TF.crop(img, top, left, crop, crop)
    lab = TF.crop(lab, top, left, crop, crop)
    return img.as_subclass(torch.Tensor), lab.as_subclass(torch.Tensor).long()
