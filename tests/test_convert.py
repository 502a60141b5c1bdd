"""Conversion of the authors' checkpoints and ImageNet backbone files onto ntre_zoo's layout."""

from __future__ import annotations

import pytest
import timm
import torch
from conftest import TINY
from data_fixtures import PSPNET_STEM

import ntre_zoo
from ntre_zoo.cli import main as cli_main
from ntre_zoo.errors import StateDictMismatchError
from ntre_zoo.zoo.convert import (
    convert_imagenet_backbone,
    from_official_checkpoint,
    from_reference_key,
    reference_to_ntre_zoo,
    to_reference_key,
    to_reference_state_dict,
)

NARROW = {k: TINY[k] for k in ("layers", "channels", "stem_width")}


def _episode(shot: int = 1, size: int = 65):
    g = torch.Generator().manual_seed(3)
    masks = (torch.rand(1, shot, size, size, generator=g) > 0.5).long()
    return torch.randn(1, 3, size, size, generator=g), torch.randn(1, shot, 3, size, size, generator=g), masks


def _save_reference_checkpoint(model, path):
    torch.save({"epoch": 0, "state_dict": to_reference_state_dict(model), "optimizer": {}}, path)
    return path


def _assert_same(a, b, shot=1):
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    with torch.no_grad():
        assert torch.equal(a(*_episode(shot)).logits, b(*_episode(shot)).logits)


@pytest.mark.parametrize(
    "reference, ours, is_vgg",
    [
        ("layer0.0.weight", "backbone.conv1.0.weight", False),
        ("layer0.4.running_var", "backbone.conv1.4.running_var", False),
        ("layer0.7.num_batches_tracked", "backbone.bn1.num_batches_tracked", False),
        ("layer3.0.downsample.1.weight", "backbone.layer3.0.downsample.1.weight", False),
        ("layer1.0.weight", "backbone.features.7.weight", True),
        ("layer4.3.bias", "backbone.features.37.bias", True),
        ("down_supp.0.weight", "down_support.0.weight", False),
        ("down_bg.0.weight", "bg_mining.reduce.0.weight", False),
        ("bg_cls.3.bias", "bg_mining.classifier.3.bias", False),
        ("inital_beta_conv.1.2.weight", "bins.1.matching_refine.2.weight", False),
        ("inital_inner_cls.3.3.bias", "bins.3.initial_classifier.3.bias", False),
        ("init_merge3.2.0.weight", "bins.2.do_eliminating.0.weight", False),
        ("alpha_conv.0.0.weight", "bins.1.inter_scale_merge.0.weight", False),
        ("inner_cls.2.3.weight", "bins.2.classifier.3.weight", False),
        ("res2.2.weight", "fuse_refine.2.weight", False),
        ("cls.3.bias", "classifier.3.bias", False),
        ("bg_prototype", "bg_prototype", True),
    ],
)
def test_key_map_both_ways(reference, ours, is_vgg):
    assert from_reference_key(reference, is_vgg) == ours
    assert to_reference_key(ours, is_vgg) == reference


def test_full_size_key_counts():
    """The spec's checksums: 400 (R50), 706 (R101), 161 (VGG) reference entries, all mapped one to one."""
    for backbone, count in (("resnet50", 400), ("resnet101", 706), ("vgg16_bn", 161)):
        with torch.device("meta"):
            keys = ntre_zoo.create_model(backbone, reduce_dim=8).state_dict()
        reference = to_reference_state_dict(keys, is_vgg=backbone == "vgg16_bn")
        assert len(reference) == count == len(set(reference)), backbone
        assert sum(not k.startswith("module.layer") for k in reference) == 70
        assert reference_to_ntre_zoo(reference, backbone).keys() == keys.keys()


@pytest.mark.parametrize("shot", [1, 5])
def test_resnet_checkpoint_round_trip(tiny_model, tmp_path, shot):
    path = _save_reference_checkpoint(tiny_model, tmp_path / "final.pth")
    converted = from_official_checkpoint(path, "resnet50", shot=shot, **TINY, test_size=65)
    assert not converted.training and converted.config.shot == shot
    _assert_same(tiny_model, converted, shot)


def test_vgg_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ntre_zoo.create_model("vgg16_bn", reduce_dim=16, pyramid_bins=(4, 2)).eval()
    with torch.no_grad():
        model.bg_prototype.normal_()
    path = _save_reference_checkpoint(model, tmp_path / "vgg.pth")
    _assert_same(model, from_official_checkpoint(path, "vgg16_bn", reduce_dim=16, pyramid_bins=(4, 2)))


def test_leftover_and_missing_keys_are_named(tiny_model, tmp_path):
    state = to_reference_state_dict(tiny_model)
    state["module.bg_prototype_extra"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "extra.pth")
    with pytest.raises(StateDictMismatchError, match="bg_prototype_extra"):
        from_official_checkpoint(tmp_path / "extra.pth", "resnet50", **TINY)
    state = to_reference_state_dict(tiny_model)
    del state["module.inner_cls.1.3.bias"]
    torch.save({"state_dict": state}, tmp_path / "missing.pth")
    with pytest.raises(StateDictMismatchError, match=r"bins.1.classifier.3.bias \(reference: inner_cls.1.3.bias\)"):
        from_official_checkpoint(tmp_path / "missing.pth", "resnet50", **TINY)
    with pytest.raises(StateDictMismatchError, match="Is --backbone right"):
        from_official_checkpoint(tmp_path / "missing.pth", "vgg16_bn")
    with pytest.raises(ValueError, match="Unknown backbone"):
        from_official_checkpoint(tmp_path / "missing.pth", "resnet18")


def test_pickled_code_is_not_loaded(tmp_path):
    torch.save({"state_dict": {"x": object()}}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        from_official_checkpoint(tmp_path / "evil.pth", "resnet50")


def _pspnet_layout(timm_state):
    """A timm resnet*s state dict renamed to PSPNet's resnet*_v2.pth layout (old files lack num_batches_tracked)."""
    stem = PSPNET_STEM
    out = {}
    for key, value in timm_state.items():
        if key.endswith("num_batches_tracked"):
            continue
        module, _, leaf = key.rpartition(".")
        out[f"{stem.get(module, module)}.{leaf}"] = value
    return out


def test_imagenet_resnet_file(tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model("resnet50s", **NARROW)
    psp = _pspnet_layout(reference.state_dict())
    assert {"conv1.weight", "bn3.running_mean", "conv3.weight", "fc.bias"} <= psp.keys()
    torch.save(psp, tmp_path / "resnet50_v2.pth")
    full = convert_imagenet_backbone(tmp_path / "resnet50_v2.pth", "resnet50", include_classifier=True)
    target = timm.create_model("resnet50s", **NARROW)
    target.load_state_dict(full, strict=True)
    for key, value in psp.items():
        assert any(torch.equal(value, v) for k, v in full.items() if k.endswith(key.rpartition(".")[2]))
    model = ntre_zoo.create_model("resnet50", **TINY)
    model.backbone.load_state_dict(convert_imagenet_backbone(psp, "resnet50"), strict=True)
    assert torch.equal(model.backbone.conv1[6].weight, reference.conv1[6].weight)
    assert torch.equal(model.backbone.bn1.running_var, reference.bn1.running_var)
    with pytest.raises(StateDictMismatchError, match=r"aux\.weight"):
        convert_imagenet_backbone({**psp, "aux.weight": torch.zeros(1)}, "resnet50")


def test_imagenet_vgg_file():
    """torchvision vgg16_bn layout -> timm vgg16_bn, checked on the meta device (no 138M-parameter allocation)."""
    with torch.device("meta"):
        target = timm.create_model("vgg16_bn")
    torchvision_layout = {}
    for key, value in target.state_dict().items():
        key = (
            key.replace("pre_logits.fc1", "classifier.0")
            .replace("pre_logits.fc2", "classifier.3")
            .replace("head.fc", "classifier.6")
        )
        torchvision_layout[key] = value.flatten(1) if key in ("classifier.0.weight", "classifier.3.weight") else value
    assert torchvision_layout["classifier.0.weight"].shape == (4096, 25088)
    converted = convert_imagenet_backbone(torchvision_layout, "vgg16_bn", include_classifier=True)
    target.load_state_dict(converted, strict=True, assign=True)
    backbone_only = convert_imagenet_backbone(torchvision_layout, "vgg16_bn")
    with torch.device("meta"):
        ours = ntre_zoo.create_model("vgg16_bn", reduce_dim=8).backbone.state_dict()
    assert {k: tuple(v.shape) for k, v in backbone_only.items()} == {k: tuple(v.shape) for k, v in ours.items()}


def test_cli_convert(tmp_path, capsys):
    torch.manual_seed(0)
    model = ntre_zoo.create_model("vgg16_bn").eval()
    path = _save_reference_checkpoint(model, tmp_path / "final.pth")
    assert (
        cli_main(
            [
                "convert",
                str(path),
                "--backbone",
                "vgg16_bn",
                "-o",
                str(tmp_path / "out"),
                "--dataset",
                "pascal5i",
                "--fold",
                "2",
            ]
        )
        == 0
    )
    assert "converted" in capsys.readouterr().out
    loaded = ntre_zoo.from_pretrained(tmp_path / "out")
    assert loaded.pretrained_metadata["test_classes"][0] == "diningtable"
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert cli_main(["convert", str(path), "--backbone", "resnet50", "-o", str(tmp_path / "bad")]) == 1
    assert "Check --backbone" in capsys.readouterr().err
