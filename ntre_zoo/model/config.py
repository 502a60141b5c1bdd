"""Frozen configuration dataclasses for the model (the training and data configs live beside their code),
and the checks of the values every entry point takes (an integer count, a device, an autocast dtype)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.preprocessing import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "AMP_DTYPES",
    "BACKBONES",
    "BackboneConfig",
    "ModelConfig",
    "check_amp_dtype",
    "check_fields",
    "check_int",
    "resolve_device",
]

#: The dtypes autocast runs in (``amp_dtype=``); None is fp32.
AMP_DTYPES = (torch.bfloat16, torch.float16)

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


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool, not a float such as ``2.5`` or ``"1"``) and at
    least ``minimum``.

    Raises:
        TypeError: not an integer; ValueError: below ``minimum``. Both name ``name`` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")
    return int(value)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false, got {value!r} ({type(value).__name__}).")
    return value


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r} ({type(value).__name__}).")
    return float(value)


def _check_sequence(value: Any, name: str, length: int | None = None) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of numbers, got {value!r} ({type(value).__name__}).")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must hold {length} values, got {len(value)}: {value!r}.")
    return tuple(value)


def resolve_device(device: Any, name: str = "device") -> torch.device | None:
    """``device`` (``"cpu"``, ``"cuda:1"``, a ``torch.device`` or None) as a ``torch.device`` that exists here.

    Raises:
        TypeError, ValueError: naming ``name`` and the value: not a device, or a CUDA/MPS device this
            machine does not have.
    """
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a string such as 'cpu' or 'cuda:0', got {device!r} ({type(device).__name__}).")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"{name}={device!r} is not a torch device; use e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'."
        ) from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index or 0) >= count:
            raise ValueError(f"{name}={device!r}, but this machine has {count} usable CUDA device(s); use 'cpu'.")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={device!r}, but MPS is not available here; use 'cpu'.")
    return resolved


def check_amp_dtype(amp_dtype: Any, name: str = "amp_dtype") -> torch.dtype | None:
    """None (fp32) or one of :data:`AMP_DTYPES`.

    Raises:
        TypeError: anything else, naming ``name`` and the value.
    """
    if amp_dtype is None or any(amp_dtype is dtype for dtype in AMP_DTYPES):
        return amp_dtype
    raise TypeError(
        f"{name} must be torch.bfloat16 or torch.float16 (autocast's dtypes), or None for fp32; got {amp_dtype!r}."
    )


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
        if not isinstance(self.name, str) or self.name not in BACKBONES:
            raise ValueError(f"Unknown backbone {self.name!r}. Expected one of: {', '.join(BACKBONES)}.")
        narrowing = (self.layers, self.channels, self.stem_width)
        if self.name == "vgg16_bn" and any(v is not None for v in narrowing):
            raise ValueError("layers/channels/stem_width narrow ResNet backbones only; vgg16_bn takes none of them.")
        for key in ("layers", "channels"):
            value = getattr(self, key)
            if value is not None:
                name = f"BackboneConfig.{key}"
                values = _check_sequence(value, name, 4)
                object.__setattr__(self, key, tuple(check_int(v, f"{name}[{i}]", 1) for i, v in enumerate(values)))
        if self.stem_width is not None:
            object.__setattr__(self, "stem_width", check_int(self.stem_width, "BackboneConfig.stem_width", 1))

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
            object.__setattr__(self, "backbone", BackboneConfig(**check_fields(BackboneConfig, self.backbone)))
        elif not isinstance(self.backbone, BackboneConfig):
            raise TypeError(f"ModelConfig.backbone must be a BackboneConfig or a name, got {self.backbone!r}.")
        for key, minimum in (("shot", 1), ("reduce_dim", 1), ("bg_prototypes", 1), ("test_size", 9)):
            object.__setattr__(self, key, check_int(getattr(self, key), f"ModelConfig.{key}", minimum))
        if self.bg_prototypes != 1:
            raise ValueError(
                f"bg_prototypes={self.bg_prototypes!r} is not supported: the reference only runs with 1 "
                "(its bgpro_num=2 config crashes, see the spec section 6.1 item 3)."
            )
        for key in ("bg_eliminating", "do_eliminating"):
            _check_bool(getattr(self, key), f"ModelConfig.{key}")
        for key in ("reduce_dropout", "classifier_dropout"):
            value = _check_number(getattr(self, key), f"ModelConfig.{key}")
            if not 0 <= value < 1:
                raise ValueError(f"ModelConfig.{key} must be in [0, 1), got {value!r}.")
            object.__setattr__(self, key, value)
        object.__setattr__(self, "pyramid_bins", self._bins())
        for key in ("mean", "std"):
            name = f"ModelConfig.{key}"
            values = tuple(
                _check_number(v, f"{name}[{i}]") for i, v in enumerate(_check_sequence(getattr(self, key), name, 3))
            )
            object.__setattr__(self, key, values)
        if min(self.std) <= 0:
            raise ValueError(f"ModelConfig.std must be positive (the inputs are divided by it), got {self.std!r}.")

    def _bins(self) -> tuple[float, ...]:
        """``pyramid_bins`` checked: fractions in (0, 1] stay floats, larger values must be whole sizes."""
        bins = []
        for i, value in enumerate(_check_sequence(self.pyramid_bins, "ModelConfig.pyramid_bins")):
            value = _check_number(value, f"ModelConfig.pyramid_bins[{i}]")
            if value <= 0 or (value > 1 and value != int(value)):
                raise ValueError(
                    f"pyramid_bins must be fractions in (0, 1] or whole sizes > 1, got {self.pyramid_bins!r}."
                )
            bins.append(value if value <= 1 else int(value))
        if not bins:
            raise ValueError(f"pyramid_bins must be positive, got {self.pyramid_bins!r}.")
        return tuple(bins)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @property
    def bg_mining(self) -> bool:
        """Whether the model has BG mining (BGEM and DOEM both use its output)."""
        return self.bg_eliminating or self.do_eliminating

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise so that a newer config is not half-read, and the values
        are checked as the constructor checks them (lists become tuples)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"A ModelConfig is read from a JSON object, got {type(data).__name__}.")
        return cls(**check_fields(cls, data))
