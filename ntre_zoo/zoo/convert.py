"""Convert the authors' checkpoints and the reference ImageNet backbones to ntre_zoo's layout.

Two kinds of file come from the reference code (github.com/LIUYUANWEI98/NERTNet, spec section 2):

* NTRENet checkpoints written by its ``train.py``: ``{"epoch", "state_dict", "optimizer"}`` with keys
  prefixed ``module.`` (DataParallel). :func:`from_official_checkpoint` renames every key onto
  ntre_zoo's modules; the numbers are untouched, so logits equal the reference model's.
* The ImageNet files its backbones start from: PSPNet's ``resnet{50,101}_v2.pth`` (stem
  ``conv1/bn1/conv2/bn2/conv3/bn3``) and torchvision's ``vgg16_bn.pth``. :func:`convert_imagenet_backbone`
  renames them to timm's ``resnet50s``/``resnet101s``/``vgg16_bn`` keys.

Everything is read with ``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import StateDictMismatchError
from ..model import NTRENet
from ..model.backbones import VGG_STAGES
from ..model.config import BACKBONES
from ..model.factory import create_model
from .loading import load_state_dict_strict

__all__ = [
    "convert_imagenet_backbone",
    "from_official_checkpoint",
    "from_reference_key",
    "load_reference_state_dict",
    "reference_to_ntre_zoo",
    "to_reference_key",
    "to_reference_state_dict",
]

PathLike = str | os.PathLike[str]
StateDict = dict[str, torch.Tensor]

#: Reference module -> ntre_zoo module, for modules that are not lists.
_HEAD = {
    "bg_prototype": "bg_prototype",
    "down_query": "down_query",
    "down_supp": "down_support",
    "down_bg": "bg_mining.reduce",
    "bg_res1": "bg_mining.refine",
    "bg_cls": "bg_mining.classifier",
    "res1": "fuse",
    "res2": "fuse_refine",
    "cls": "classifier",
}
#: Reference ModuleList -> (PyramidBin attribute, bin offset): ``alpha_conv[j]`` belongs to bin j + 1.
_BINS = {
    "init_merge1": ("bg_eliminating", 0),
    "init_merge2": ("feature_matching", 0),
    "inital_beta_conv": ("matching_refine", 0),
    "inital_inner_cls": ("initial_classifier", 0),
    "init_merge3": ("do_eliminating", 0),
    "alpha_conv": ("inter_scale_merge", 1),
    "beta_conv": ("refine", 0),
    "inner_cls": ("classifier", 0),
}
#: The reference ResNet ``layer0`` Sequential index -> timm deep-stem module (2, 5, 8, 9 are ReLU/pool).
_STEM = {"0": "conv1.0", "1": "conv1.1", "3": "conv1.3", "4": "conv1.4", "6": "conv1.6", "7": "bn1"}
#: PSPNet ImageNet ResNet stem -> timm deep stem.
_IMAGENET_STEM = {
    "conv1": "conv1.0",
    "bn1": "conv1.1",
    "conv2": "conv1.3",
    "bn2": "conv1.4",
    "conv3": "conv1.6",
    "bn3": "bn1",
}
#: torchvision VGG classifier -> timm VGG head, with the shape timm's convolutional MLP expects.
_VGG_CLASSIFIER = {
    "0": ("pre_logits.fc1", (-1, 512, 7, 7)),
    "3": ("pre_logits.fc2", (-1, 4096, 1, 1)),
    "6": ("head.fc", None),
}


def _check_backbone(backbone: str) -> bool:
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}. Expected one of: {', '.join(BACKBONES)}.")
    return backbone == "vgg16_bn"


def from_reference_key(key: str, is_vgg: bool) -> str | None:
    """The ntre_zoo key of a reference NTRENet key (without ``module.``), or None if it has no counterpart."""
    parts = key.split(".")
    head = parts[0]
    if head in _HEAD:
        return ".".join([_HEAD[head], *parts[1:]])
    if head in _BINS and len(parts) > 2 and parts[1].isdigit():
        attr, offset = _BINS[head]
        return ".".join(["bins", str(int(parts[1]) + offset), attr, *parts[2:]])
    if head in {f"layer{s}" for s in range(5)} and len(parts) > 2:
        stage = int(head[-1])
        if is_vgg:
            if not parts[1].isdigit() or int(parts[1]) >= len(VGG_STAGES[stage]):
                return None
            return ".".join(["backbone.features", str(VGG_STAGES[stage].start + int(parts[1])), *parts[2:]])
        if stage == 0:
            return ".".join(["backbone", _STEM[parts[1]], *parts[2:]]) if parts[1] in _STEM else None
        return "backbone." + key
    return None


def to_reference_key(key: str, is_vgg: bool) -> str | None:
    """Inverse of :func:`from_reference_key`: the reference key of an ntre_zoo key, or None."""
    parts = key.split(".")
    if parts[0] == "bins" and len(parts) > 3:
        for ref, (attr, offset) in _BINS.items():
            if parts[2] == attr:
                return ".".join([ref, str(int(parts[1]) - offset), *parts[3:]])
        return None
    for ref, ours in _HEAD.items():
        n = ours.count(".") + 1
        if parts[:n] == ours.split("."):
            return ".".join([ref, *parts[n:]])
    if parts[0] != "backbone" or len(parts) < 3:
        return None
    if is_vgg:
        index = int(parts[2]) if parts[1] == "features" and parts[2].isdigit() else -1
        for stage, indices in enumerate(VGG_STAGES):
            if index in indices:
                return ".".join([f"layer{stage}", str(index - indices.start), *parts[3:]])
        return None
    for ref_index, ours in _STEM.items():
        n = ours.count(".") + 1
        if parts[1 : 1 + n] == ours.split("."):
            return ".".join(["layer0", ref_index, *parts[1 + n :]])
    return ".".join(parts[1:]) if parts[1] in {"layer1", "layer2", "layer3", "layer4"} else None


def _strip_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> StateDict:
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def reference_to_ntre_zoo(state_dict: Mapping[str, torch.Tensor], backbone: str) -> StateDict:
    """Rename a reference NTRENet state dict (``module.`` prefix optional) to ntre_zoo keys.

    Raises:
        StateDictMismatchError: keys that have no ntre_zoo counterpart (all of them are named).
    """
    is_vgg = _check_backbone(backbone)
    converted: StateDict = {}
    leftover = []
    for key, value in _strip_prefix(state_dict).items():
        ours = from_reference_key(key, is_vgg)
        if ours is None:
            leftover.append(key)
        else:
            converted[ours] = value
    if leftover:
        raise StateDictMismatchError(
            f"{len(leftover)} key(s) of the reference checkpoint have no place in ntre_zoo's {backbone} NTRENet: "
            f"{', '.join(sorted(leftover)[:20])}{' ...' if len(leftover) > 20 else ''}. Is --backbone right "
            "(resnet50, resnet101 or vgg16_bn), and is this an NTRENet checkpoint with bgpro_num=1?"
        )
    return converted


def to_reference_state_dict(
    model_or_state_dict: NTRENet | Mapping[str, torch.Tensor],
    is_vgg: bool | None = None,
    prefix: str = "module.",
) -> StateDict:
    """Write ntre_zoo weights in the reference layout (as its ``train.py`` saves them, with ``module.``).

    Args:
        model_or_state_dict: an NTRENet or its state dict.
        is_vgg: the backbone family; read from the model or guessed from the keys when None.
        prefix: prepended to every key (``""`` for a bare reference model).

    Raises:
        StateDictMismatchError: a key with no reference counterpart.
    """
    if isinstance(model_or_state_dict, NTRENet):
        is_vgg = model_or_state_dict.config.backbone.is_vgg if is_vgg is None else is_vgg
        model_or_state_dict = model_or_state_dict.state_dict()
    if is_vgg is None:
        is_vgg = any(k.startswith("backbone.features.") for k in model_or_state_dict)
    out: StateDict = {}
    for key, value in model_or_state_dict.items():
        ref = to_reference_key(key, is_vgg)
        if ref is None:
            raise StateDictMismatchError(f"ntre_zoo key {key!r} has no counterpart in the reference NTRENet.")
        out[prefix + ref] = value
    return out


def _torch_load(path: PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError or RuntimeError depending on the cause
        raise ValueError(
            f"Could not read {str(path)!r} with torch.load(weights_only=True): {error}. Only plain tensor "
            "checkpoints are read (no pickled code); re-save the state dict with torch.save(model.state_dict())."
        ) from error


def _state_dict_of(checkpoint: Any, source: str) -> Mapping[str, torch.Tensor]:
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{source} holds neither a state dict nor a dict with a 'state_dict' of tensors.")
    return checkpoint


def load_reference_state_dict(
    model: NTRENet, state_dict: Mapping[str, torch.Tensor], source: str = "the reference checkpoint"
) -> None:
    """Rename a reference state dict and load it strictly into ``model``.

    Raises:
        StateDictMismatchError: leftover reference keys, or ntre_zoo keys the checkpoint lacks (named in
            both layouts), or shapes that differ.
    """
    is_vgg = model.config.backbone.is_vgg
    converted = reference_to_ntre_zoo(state_dict, model.config.backbone.name)
    load_state_dict_strict(
        model,
        converted,
        source=source,
        describe=lambda key: f"{key} (reference: {to_reference_key(key, is_vgg) or '-'})",
        hint="Check --backbone, and that the checkpoint is a complete NTRENet (bgpro_num=1) from the authors' "
        "train.py.",
    )


def from_official_checkpoint(
    path: PathLike, backbone: str, shot: int = 1, *, device: Any | None = None, **options: Any
) -> NTRENet:
    """Build an ntre_zoo NTRENet from a checkpoint of the authors' training code.

    Args:
        path: a ``.pth`` holding ``{"state_dict": ...}`` (keys ``module.``-prefixed) or a bare state dict.
        backbone: ``resnet50``, ``resnet101`` or ``vgg16_bn``.
        shot: the shot the checkpoint was trained with (recorded in the config; any K works at inference).
        device: where to put the model.
        **options: :func:`ntre_zoo.create_model` options (e.g. ``test_size``; narrowing only for tests).

    Returns:
        The model in eval mode; its logits equal the reference model's on the same inputs.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a tensor checkpoint, or an unknown backbone.
        StateDictMismatchError: any key left over or missing (all named).
    """
    _check_backbone(backbone)
    state_dict = _state_dict_of(_torch_load(path), repr(str(path)))
    model = create_model(backbone, shot=shot, **options)
    load_reference_state_dict(model, state_dict, source=repr(str(path)))
    model.eval()
    return model if device is None else model.to(device)


def convert_imagenet_backbone(
    path_or_state_dict: PathLike | Mapping[str, torch.Tensor], backbone: str, *, include_classifier: bool = False
) -> StateDict:
    """Rename a reference ImageNet backbone file to timm keys.

    ``resnet50_v2.pth``/``resnet101_v2.pth`` (PSPNet: stem ``conv1, bn1, conv2, bn2, conv3, bn3``, then
    ``layer1-4``, ``fc``) become timm ``resnet50s``/``resnet101s`` keys; ``vgg16_bn.pth`` (torchvision
    ``features.N``, ``classifier.{0,3,6}``) becomes timm ``vgg16_bn`` keys. BN ``num_batches_tracked``
    entries that old files lack are added as 0.

    Args:
        path_or_state_dict: a file (read with ``weights_only=True``) or a state dict.
        backbone: ``resnet50``, ``resnet101`` or ``vgg16_bn``.
        include_classifier: keep the ImageNet classifier (for a full timm model). Without it the result
            loads strictly into ``model.backbone`` of an ntre_zoo NTRENet.

    Returns:
        The renamed state dict.

    Raises:
        StateDictMismatchError: keys that are not part of that backbone (all named).
    """
    is_vgg = _check_backbone(backbone)
    if isinstance(path_or_state_dict, Mapping):
        source, checkpoint = "the state dict", path_or_state_dict
    else:
        source, checkpoint = repr(str(path_or_state_dict)), _torch_load(path_or_state_dict)
    state_dict = _strip_prefix(_state_dict_of(checkpoint, source))
    out: StateDict = {}
    leftover = []
    for key, value in state_dict.items():
        parts = key.split(".")
        if is_vgg and parts[0] == "features" and parts[1].isdigit():
            if int(parts[1]) < VGG_STAGES[-1].stop:
                out[key] = value
            else:
                leftover.append(key)
        elif is_vgg and parts[0] == "classifier" and parts[1] in _VGG_CLASSIFIER:
            name, shape = _VGG_CLASSIFIER[parts[1]]
            if include_classifier:
                out[".".join([name, *parts[2:]])] = value.reshape(shape) if shape and parts[2] == "weight" else value
        elif not is_vgg and parts[0] in _IMAGENET_STEM:
            out[".".join([_IMAGENET_STEM[parts[0]], *parts[1:]])] = value
        elif not is_vgg and parts[0] in {"layer1", "layer2", "layer3", "layer4"}:
            out[key] = value
        elif not is_vgg and parts[0] == "fc":
            if include_classifier:
                out[key] = value
        else:
            leftover.append(key)
    if leftover:
        raise StateDictMismatchError(
            f"{len(leftover)} key(s) of {source} are not part of an ImageNet {backbone}: "
            f"{', '.join(sorted(leftover)[:20])}{' ...' if len(leftover) > 20 else ''}. Is the backbone right?"
        )
    for key in [k for k in out if k.endswith(".running_var")]:
        out.setdefault(key[: -len("running_var")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return out
