"""Backbones: reference layout, dilation, strides and frozen parameters."""

import pytest
import torch

from ntre_zoo.model.backbones import VGG_STAGES, create_backbone
from ntre_zoo.model.config import BackboneConfig


def test_resnet_dilates_every_block_of_layer3_and_layer4_including_block0():
    backbone = create_backbone(BackboneConfig("resnet50", layers=(1, 2, 2, 2), channels=(8, 16, 32, 64), stem_width=8))
    for layer, dilation in ((backbone.layer3, 2), (backbone.layer4, 4)):
        for block in layer:
            assert block.conv2.dilation == (dilation, dilation)
            assert block.conv2.padding == (dilation, dilation)
            assert block.conv2.stride == (1, 1)
        assert layer[0].downsample[0].stride == (1, 1)


def test_resnet_output_stride_8_and_channels():
    backbone = create_backbone(BackboneConfig("resnet50", layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8))
    layer2, layer3 = backbone.forward_mid(torch.randn(1, 3, 65, 65))
    layer4 = backbone.forward_high(layer3)
    assert layer2.shape[-2:] == layer3.shape[-2:] == layer4.shape[-2:] == (9, 9)
    # layer3 = 32 * 4 channels, layer2 = 16 * 4 (bottleneck expansion 4)
    assert (layer3.shape[1], layer2.shape[1]) == (128, 64)
    assert layer2.shape[1] + layer3.shape[1] == backbone.mid_channels
    assert layer4.shape[1] == backbone.high_channels


def test_backbone_is_frozen():
    backbone = create_backbone(BackboneConfig("resnet50", layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8))
    assert not any(p.requires_grad for p in backbone.parameters())


def test_vgg_stages_ceil_mode_and_reference_sizes():
    backbone = create_backbone(BackboneConfig("vgg16_bn")).eval()
    assert len(backbone.features) == VGG_STAGES[-1].stop == 43
    pools = [m for m in backbone.features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 4 and all(p.ceil_mode for p in pools)
    # 65 -> 33 -> 17 -> 9 -> 5 with ceil-mode pools (the reference's 473 -> 237 -> 119 -> 60 -> 30).
    with torch.no_grad():
        layer2, layer3 = backbone.forward_mid(torch.randn(1, 3, 65, 65))
        layer4 = backbone.forward_high(layer3)
    assert layer3.shape == (1, 512, 5, 5) and layer2.shape == (1, 256, 5, 5) and layer4.shape == (1, 512, 5, 5)
    assert not any(k.startswith(("pre_logits", "head")) for k in backbone.state_dict())


def test_vgg_rejects_narrowing_options():
    with pytest.raises(ValueError, match="vgg16_bn takes none"):
        BackboneConfig("vgg16_bn", layers=(1, 1, 1, 1))


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match="resnet50, resnet101, vgg16_bn"):
        BackboneConfig("resnet18")
