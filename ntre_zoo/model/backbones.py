"""Frozen timm backbones laid out like the NTRENet/PFENet reference code.

* ResNet-50/101: timm ``resnet50s``/``resnet101s`` (deep stem 3-64-64-128, stride on the 3x3 conv), made
  output-stride 8 with dilation 2 on every block of layer3 and 4 on every block of layer4, block 0
  included (timm's ``output_stride=8`` keeps block 0 at the previous dilation; the reference does not).
* VGG-16-BN: timm ``vgg16_bn`` ``features`` cut into layer0..layer4 at indices 0-6, 7-13, 14-23, 24-33,
  34-42 (the last pool is dropped), every max-pool with ``ceil_mode=True``.

The timm module names are kept (``conv1.0``, ``layer3.2.conv2``, ``features.24``), so timm's ImageNet
weights load directly and reference checkpoints map onto them key by key (see :mod:`ntre_zoo.zoo.convert`).
"""

from __future__ import annotations

import abc
from typing import Any

import timm
import torch
from torch import nn

from .config import BackboneConfig

__all__ = ["VGG_STAGES", "Backbone", "ResNetBackbone", "VGGBackbone", "create_backbone"]

#: ``features`` index ranges of the reference's VGG layer0..layer4 (index 43, the last pool, is unused).
VGG_STAGES: tuple[range, ...] = (range(0, 7), range(7, 14), range(14, 24), range(24, 34), range(34, 43))


class Backbone(nn.Module, abc.ABC):
    """Common contract: ``forward_mid(x) -> (layer2, layer3)`` and ``forward_high(layer3) -> layer4``.

    ``mid_channels`` is the width of ``cat([layer3, layer2])``; ``high_channels`` that of layer4.
    All parameters are frozen (``requires_grad=False``); BN mode follows ``train()``/``eval()``.
    """

    mid_channels: int
    high_channels: int

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)

    @abc.abstractmethod
    def forward_mid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` images -> ``(layer2, layer3)``, both at layer3's size."""

    @abc.abstractmethod
    def forward_high(self, layer3: torch.Tensor) -> torch.Tensor:
        """layer3 features -> layer4 features (used only for the prior mask)."""


class ResNetBackbone(Backbone):
    """Dilated deep-stem ResNet (stride 8). Submodules keep timm's names, without the classifier."""

    def __init__(self, config: BackboneConfig, pretrained: bool = False) -> None:
        super().__init__()
        kwargs = {k: getattr(config, k) for k in ("layers", "channels", "stem_width") if getattr(config, k) is not None}
        net: Any = timm.create_model(  # timm models are built dynamically: their attributes are untyped
            config.timm_name, pretrained=pretrained, output_stride=8, num_classes=0, global_pool="", **kwargs
        )
        self.conv1, self.bn1, self.act1, self.maxpool = net.conv1, net.bn1, net.act1, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        for layer, dilation in ((self.layer3, 2), (self.layer4, 4)):
            for name, module in layer.named_modules():
                if name.endswith("conv2"):
                    module.dilation, module.padding, module.stride = (dilation, dilation), (dilation, dilation), (1, 1)
                elif name.endswith("downsample.0"):
                    module.stride = (1, 1)
        self.mid_channels = net.layer3[-1].conv3.out_channels + net.layer2[-1].conv3.out_channels
        self.high_channels = net.layer4[-1].conv3.out_channels
        self.freeze()

    def forward_mid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        layer2 = self.layer2(self.layer1(x))
        return layer2, self.layer3(layer2)

    def forward_high(self, layer3: torch.Tensor) -> torch.Tensor:
        return self.layer4(layer3)


class VGGBackbone(Backbone):
    """VGG-16-BN ``features[:43]`` with ceil-mode pools; layer2 is resized to layer3's size (stride 16)."""

    def __init__(self, config: BackboneConfig, pretrained: bool = False) -> None:
        super().__init__()
        if pretrained:
            features: Any = timm.create_model(config.timm_name, pretrained=True).features
        else:
            # Build on the meta device so the 134M-parameter classifier is never allocated, then
            # materialise only the feature extractor and initialise it as timm would.
            meta: Any = timm.create_model(config.timm_name, device="meta")
            features = meta.features.to_empty(device="cpu")
            for m in features.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    m.reset_parameters()
                    m.reset_running_stats()
        self.features = nn.Sequential(*list(features)[: VGG_STAGES[-1].stop])
        for m in self.features:
            if isinstance(m, nn.MaxPool2d):
                m.ceil_mode = True
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        self.high_channels = convs[-1].out_channels
        self.mid_channels = self._stage_out(3) + self._stage_out(2)
        self.freeze()

    def _stage_out(self, stage: int) -> int:
        return [m for i, m in enumerate(self.features) if i in VGG_STAGES[stage] and isinstance(m, nn.Conv2d)][
            -1
        ].out_channels

    def _run(self, x: torch.Tensor, stages: range) -> torch.Tensor:
        for s in stages:
            for i in VGG_STAGES[s]:
                x = self.features[i](x)
        return x

    def forward_mid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer2 = self._run(x, range(0, 3))
        layer3 = self._run(layer2, range(3, 4))
        layer2 = nn.functional.interpolate(layer2, size=layer3.shape[-2:], mode="bilinear", align_corners=True)
        return layer2, layer3

    def forward_high(self, layer3: torch.Tensor) -> torch.Tensor:
        return self._run(layer3, range(4, 5))


def create_backbone(config: BackboneConfig, pretrained: bool = False) -> Backbone:
    """Build the frozen backbone for ``config``; ``pretrained`` fetches timm's ImageNet weights."""
    return VGGBackbone(config, pretrained) if config.is_vgg else ResNetBackbone(config, pretrained)
