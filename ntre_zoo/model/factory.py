"""``create_model``: build an untrained NTRENet from a backbone name and options."""

from __future__ import annotations

import dataclasses
from typing import Any

from .config import BackboneConfig, ModelConfig
from .ntrenet import NTRENet

__all__ = ["create_model"]

_BACKBONE_OPTIONS = ("layers", "channels", "stem_width")


def create_model(
    backbone: str = "resnet50",
    shot: int = 1,
    pretrained_backbone: bool = False,
    *,
    device: Any | None = None,
    **options: Any,
) -> NTRENet:
    """Build an untrained NTRENet.

    Args:
        backbone: ``resnet50``, ``resnet101`` or ``vgg16_bn``.
        shot: the number of supports it will be trained with (any K works at inference).
        pretrained_backbone: fetch timm's ImageNet weights for the backbone (needs the Hub).
        device: where to put the model.
        **options: :class:`~ntre_zoo.model.config.ModelConfig` fields (``reduce_dim``, ``pyramid_bins``,
            ``test_size`` ...) and backbone narrowing (``layers``, ``channels``, ``stem_width``).

    Raises:
        ValueError: an unknown backbone or option.
    """
    backbone_options = {k: options.pop(k) for k in _BACKBONE_OPTIONS if k in options}
    known = {f.name for f in dataclasses.fields(ModelConfig)} - {"backbone", "shot"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for create_model. Expected ModelConfig fields {sorted(known)} "
            f"or backbone options {list(_BACKBONE_OPTIONS)}."
        )
    config = ModelConfig(backbone=BackboneConfig(backbone, **backbone_options), shot=shot, **options)
    model = NTRENet(config, pretrained_backbone=pretrained_backbone)
    return model if device is None else model.to(device)
