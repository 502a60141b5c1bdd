"""Frozen configuration dataclasses for the model (the training and data configs live beside their code)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..data.preprocessing import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["BACKBONES", "BackboneConfig", "ModelConfig", "check_fields"]

#: Backbones of the reference code, with the timm architecture each one is built from.
BACKBONES = {"resnet50": "resnet50s", "resnet101": "resnet101s", "vgg16_bn": "vgg16_bn"}


def check_fields(cls: type, data: Mapping[str, Any]) -> dict:
    """A copy of ``data`` after checking that every key is a field of dataclass ``cls``.

    Raises:
        ValueError: naming the unknown keys and the known ones (a newer config is never half-read).
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} field(s) {unknown}; expected a subset of {sorted(known)}.")
    return dict(data)


@dataclass(frozen=True)
class BackboneConfig:
    """Which timm backbone to build, and optional narrowing for small models.

    Args:
        name: ``resnet50``, ``resnet101`` or ``vgg16_bn``.
        layers: ResNet blocks per stage, e.g. ``(1, 1, 1, 1)`` for a narrow test model (default: the timm model's).
        channels: ResNet base widths per stage (timm's ``channels``), e.g. ``(8, 16, 32, 64)``.
        stem_width: ResNet deep-stem width (timm's ``stem_width``; the stem is ``w, w, 2w``).
    """

    name: str = "resnet50"
    layers: tuple[int, ...] | None = None
    channels: tuple[int, ...] | None = None
    stem_width: int | None = None

    def __post_init__(self) -> None:
        if self.name not in BACKBONES:
            raise ValueError(f"Unknown backbone {self.name!r}. Expected one of: {', '.join(BACKBONES)}.")
        narrowing = (self.layers, self.channels, self.stem_width)
        if self.name == "vgg16_bn" and any(v is not None for v in narrowing):
            raise ValueError("layers/channels/stem_width narrow ResNet backbones only; vgg16_bn takes none of them.")
        for key in ("layers", "channels"):
            value = getattr(self, key)
            if value is not None:
                if len(value) != 4 or any(int(v) < 1 for v in value):
                    raise ValueError(f"BackboneConfig.{key} must be 4 positive integers, got {value!r}.")
                object.__setattr__(self, key, tuple(int(v) for v in value))

    @property
    def timm_name(self) -> str:
        return BACKBONES[self.name]

    @property
    def is_vgg(self) -> bool:
        return self.name == "vgg16_bn"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an NTRENet; written to ``config.json`` by ``save_pretrained``.

    Args:
        backbone: the frozen feature extractor.
        shot: number of supports the weights were trained with (any K works at inference).
        reduce_dim: head width C (256 in the reference).
        pyramid_bins: FEM pyramid bins, fine to coarse; values > 1 are absolute sizes, values <= 1
            fractions of the feature size (reference: 60, 30, 15, 8).
        bg_prototypes: ``bgpro_num`` of the reference; only 1 runs there, so only 1 is accepted.
        dropout: dropout of the 1x1 reductions (0.5) and of the classifiers (0.1).
        bg_eliminating: BGEM (with BG mining); False removes it and its parameters (ablation, paper Table 3).
        do_eliminating: DOEM (needs BG mining); False removes it and its parameters. With neither, the
            model has no BG mining at all: the paper's baseline.
        test_size: side of the square canvas used by ``predict`` (473 in the reference protocol).
        mean, std: input normalisation on [0, 1] images.
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    shot: int = 1
    reduce_dim: int = 256
    pyramid_bins: tuple[float, ...] = (60, 30, 15, 8)
    bg_prototypes: int = 1
    reduce_dropout: float = 0.5
    classifier_dropout: float = 0.1
    bg_eliminating: bool = True
    do_eliminating: bool = True
    test_size: int = 473
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if isinstance(self.backbone, str):
            object.__setattr__(self, "backbone", BackboneConfig(self.backbone))
        elif isinstance(self.backbone, Mapping):
            object.__setattr__(self, "backbone", BackboneConfig(**self.backbone))
        if self.shot < 1:
            raise ValueError(f"shot must be >= 1, got {self.shot!r}.")
        if self.reduce_dim < 1:
            raise ValueError(f"reduce_dim must be >= 1, got {self.reduce_dim!r}.")
        if self.bg_prototypes != 1:
            raise ValueError(
                f"bg_prototypes={self.bg_prototypes!r} is not supported: the reference only runs with 1 "
                "(its bgpro_num=2 config crashes, see the spec section 6.1 item 3)."
            )
        bins = tuple(float(b) if float(b) <= 1 else int(b) for b in self.pyramid_bins)
        if not bins or any(b <= 0 for b in bins):
            raise ValueError(f"pyramid_bins must be positive, got {self.pyramid_bins!r}.")
        object.__setattr__(self, "pyramid_bins", bins)
        if self.test_size < 9:
            raise ValueError(f"test_size must be at least 9, got {self.test_size!r}.")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @property
    def bg_mining(self) -> bool:
        """Whether the model has BG mining (BGEM and DOEM both use its output)."""
        return self.bg_eliminating or self.do_eliminating

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise so that a newer config is not half-read."""
        values = check_fields(cls, data)
        if isinstance(values.get("backbone"), Mapping):
            bb = check_fields(BackboneConfig, values["backbone"])
            for key in ("layers", "channels"):
                if bb.get(key) is not None:
                    bb[key] = tuple(bb[key])
            values["backbone"] = BackboneConfig(**bb)
        for key in ("pyramid_bins", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)
